"""``pite-demo`` (what ``make demo`` runs): the whole product on a clip it generates.

1. renders a held-out clip of the synthetic world (a seed never used in training), with
   the questions the world can answer about it and their reference answers;
2. starts ``pite-node`` (the shipped default model unless ``--model``) and ``pite-play``
   publishing the clip as a camera topic at its real rate, each in its own process, exactly
   as an operator would run them;
3. asks the questions through the ``/pite/query`` service (one through the action, its
   answer streamed token by token), prints answers, references, time segments and tracks;
4. writes a PNG strip of the clip with the caption's trajectories drawn, and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sensor_msgs.msg import Image

from pite_msgs.msg import Answer
from pite_ros.engine.loader import DEFAULT_MODEL_DIR
from pite_ros.model.temporal import render_time_tokens
from pite_ros.node.client import NodeProcess, PiteClient, use_large_image_transport
from pite_ros.node.conversions import time_to_ns
from pite_ros.node.debug_image import draw_strip
from pite_ros.node.image_conversion import image_to_rgb
from pite_ros.node.qos import reliable_qos
from pite_ros.tools.query import format_answer

TOPIC = "/pite_demo/image"
FRAME_ID = "demo_camera"


@dataclass
class DemoQuestion:
    kind: str
    prompt: str
    reference: str


def make_clip(out: Path, seed: int, world: dict) -> tuple[Path, float, list[DemoQuestion]]:
    """One held-out clip, its duration and up to five questions with reference answers."""
    from training.datasets import ConversationDataset, GroundingDataset, MultipleChoiceDataset
    from training.datasets.prompts import STAGE2_PROMPT
    from training.synth import WorldConfig, generate

    generate(out, videos=1, images=0, split="eval", seed=seed, config=WorldConfig(**world))
    record = json.loads((out / "stage2.jsonl").read_text().splitlines()[0])
    video = out / record["video"]
    duration = float(record["clip"][1] - record["clip"][0])
    questions = [DemoQuestion("caption", STAGE2_PROMPT, record["caption"])]
    for kind, reader in (("open question", ConversationDataset), ("multiple choice", MultipleChoiceDataset),
                         ("grounding", GroundingDataset)):
        path = out / {"open question": "stage3_conversations.jsonl", "multiple choice": "stage3_mcq.jsonl",
                      "grounding": "stage3_grounding.jsonl"}[kind]
        if path.is_file():
            items = [item for _, item in reader(path, check_media=False).items if "USER:" not in item.prompt]
            for item in items[:2 if kind == "open question" else 1]:
                questions.append(DemoQuestion(kind, item.prompt, render_time_tokens(item.response, duration)[0]))
    return video, duration, questions


def start_player(video: Path, log: Path) -> subprocess.Popen:
    """``pite-play`` publishing ``video`` once, after the node and the demo have subscribed."""
    return subprocess.Popen([sys.executable, "-m", "pite_ros.tools.play", str(video), "--topic", TOPIC, "--frame-id",
                             FRAME_ID, "--wait-subscribers", "2"], stdout=log.open("w"), stderr=subprocess.STDOUT)


def print_streaming(client: PiteClient, question: str, timeout: float) -> Answer:
    """Ask through the action, printing the answer token by token as it is generated."""
    printed = [""]

    def on_text(text: str) -> None:
        if text.startswith(printed[0]):
            print(text[len(printed[0]):], end="", flush=True)
            printed[0] = text

    result = client.ask_streaming(question, on_text, timeout)
    print()
    if not result.result.success:
        raise RuntimeError(f"the node could not answer {question!r}: {result.result.message}")
    return result.result.answer


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model) if args.model else DEFAULT_MODEL_DIR
    world_file = model_dir / "synth_world.json"
    world = json.loads(world_file.read_text()) if world_file.is_file() else {}
    print(f"[1/4] rendering a held-out synthetic clip (seed {args.seed}) in {out / 'clip'}")
    video, duration, questions = make_clip(out / "clip", args.seed, world)
    params = {"model_path": str(model_dir), "engine": args.engine, "image_topic": TOPIC, "image_qos": "reliable",
              "clip_seconds": duration + 1.0, "continuous": True, "rate_hz": 0.5, "max_new_tokens": 64}
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    use_large_image_transport()
    print(f"[2/4] starting pite-node ({args.engine} engine, model {model_dir}) and pite-play {video.name} "
          f"({duration:.1f} s) on {TOPIC}; logs in {out}")
    node = NodeProcess(out, params)
    client = PiteClient("pite_demo_client", watch=node)
    frames: dict[int, np.ndarray] = {}
    client.subscribe(Image, TOPIC, lambda msg: frames.__setitem__(time_to_ns(msg.header.stamp), image_to_rgb(msg)),
                     reliable_qos(50))
    player = None
    try:
        client.wait_active()
        player = start_player(video, out / "player.log")
        client.spin_until(lambda: player.poll() is not None, duration + 90, "the clip to be played")
        if player.returncode != 0:
            raise RuntimeError(f"pite-play failed (see {out / 'player.log'})")
        client.spin_until(lambda: len(frames) > 0, 10, "frames on the topic")
        print(f"[3/4] the clip was published ({len(frames)} frames); asking {len(questions)} questions")
        caption = None
        for index, item in enumerate(questions):
            print(f"\n--- {item.kind}: {item.prompt}")
            if index == 1:
                print("streamed: ", end="")
                answer = print_streaming(client, item.prompt, args.timeout)
            else:
                response = client.request(item.prompt, timeout=args.timeout)
                if not response.success:
                    raise RuntimeError(f"the node refused {item.prompt!r}: {response.message}")
                answer = response.answer
            print(format_answer(answer))
            print(f"reference: {item.reference}")
            caption = caption or answer
        strip = draw_strip(frames, caption)
        if strip.shape[0] < 300:  # small synthetic frames: enlarge for the eye, pixels kept sharp
            factor = int(np.ceil(300 / strip.shape[0]))
            strip = cv2.resize(strip, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
        png = out / "tracks.png"
        cv2.imwrite(str(png), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        print(f"\n[4/4] wrote {png}: the clip with the caption's trajectories")
        return 0
    except (TimeoutError, RuntimeError) as error:
        print(f"pite-demo: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
        if player is not None and player.poll() is None:
            player.terminate()
            player.wait()
        node.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pite-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint dir (default: the shipped default model)")
    parser.add_argument("--engine", default="torch", choices=("torch", "onnx"))
    parser.add_argument("--out", default="out/demo", help="where the clip, logs and tracks.png go")
    parser.add_argument("--seed", type=int, default=20261124, help="seed of the held-out clip")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each answer")
    return run_demo(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
