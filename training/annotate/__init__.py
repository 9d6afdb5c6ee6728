"""pite-annotate: captioned videos -> PiTe-143k style phrase trajectories (stage-2 records).

Stages: ``pite_ros.text`` (noun phrases), ``segmenters`` (masks per phrase), ``tracking``
(points through the clip); ``pipeline`` runs one video, ``runner`` a whole JSONL (processes or
Ray, resumable), ``overlay`` draws the result, ``bench`` measures it.
"""
