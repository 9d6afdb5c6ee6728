"""The node's topic, service and action names, and how a client reaches them under a namespace.

The node's names are relative (``pite/answer``), so they resolve under its namespace
(``/cam1/pite/answer`` for a node in ``cam1``) and two nodes for two cameras run side by side;
``/diagnostics`` stays global, as the convention is, with each node's status named after
its fully qualified name.
"""

from __future__ import annotations

ANSWER_TOPIC = "pite/answer"
TRACKS_TOPIC = "pite/tracks"
DEBUG_TOPIC = "pite/debug_image"
QUERY_NAME = "pite/query"  # the service and the action
SET_PROMPT_NAME = "pite/set_prompt"
DIAGNOSTICS_TOPIC = "/diagnostics"
NODE_NAME = "pite_node"


def qualified(namespace: str, name: str) -> str:
    """The absolute name of a relative ``name`` under ``namespace``: ``("cam1", "pite/query")`` ->
    ``"/cam1/pite/query"``; ``("", "pite/query")`` -> ``"/pite/query"``."""
    return "/" + "/".join(part for part in (namespace.strip("/"), name.strip("/")) if part)


def diagnostics_name(node_name: str) -> str:
    """The /diagnostics status name of the node ``node_name`` (fully qualified): ``"cam1/pite_node: inference"``."""
    return f"{node_name.lstrip('/')}: inference"
