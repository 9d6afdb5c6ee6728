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
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rclpy
import yaml
from rclpy.action import ActionClient
from rclpy.node import Node
from sensor_msgs.msg import Image

from pite_msgs.action import Query as QueryAction
from pite_msgs.msg import Answer
from pite_msgs.srv import Query
from pite_ros.engine.loader import DEFAULT_MODEL_DIR
from pite_ros.model.temporal import render_time_tokens
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


class DemoClient:
    """The operator's side: frames seen on the topic (for the strip), the service and the action."""

    def __init__(self) -> None:
        rclpy.init()
        self.node = Node("pite_demo_client")
        self.frames: dict[int, np.ndarray] = {}
        self.node.create_subscription(Image, TOPIC, self._on_image, reliable_qos(50))
        self.query = self.node.create_client(Query, "/pite/query")
        self.action = ActionClient(self.node, QueryAction, "/pite/query")

    def _on_image(self, msg: Image) -> None:
        self.frames[time_to_ns(msg.header.stamp)] = image_to_rgb(msg)

    def spin_until(self, done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def ask(self, question: str, timeout: float) -> Answer:
        future = self.query.call_async(Query.Request(question=question, return_tracks=True))
        self.spin_until(future.done, timeout, f"the answer to {question!r}")
        response = future.result()
        if not response.success:
            raise RuntimeError(f"the node refused {question!r}: {response.message}")
        return response.answer

    def ask_streaming(self, question: str, timeout: float) -> Answer:
        printed = [""]

        def on_feedback(message) -> None:
            text = message.feedback.partial_text
            if text.startswith(printed[0]):
                print(text[len(printed[0]):], end="", flush=True)
                printed[0] = text

        goal = self.action.send_goal_async(QueryAction.Goal(question=question, return_tracks=True),
                                           feedback_callback=on_feedback)
        self.spin_until(goal.done, timeout, "the goal to be accepted")
        result = goal.result().get_result_async()
        self.spin_until(result.done, timeout, "the streamed answer")
        print()
        return result.result().result.answer

    def close(self) -> None:
        self.action.destroy()
        self.node.destroy_node()
        rclpy.try_shutdown()


def start(command: list[str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
    (out / "params.yaml").write_text(yaml.safe_dump({"pite_node": {"ros__parameters": params}}))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    print(f"[2/4] starting pite-node ({args.engine} engine, model {model_dir}) and pite-play {video.name} "
          f"({duration:.1f} s) on {TOPIC}; logs in {out}")
    node = start([sys.executable, "-m", "pite_ros.tools.node", "--params", str(out / "params.yaml")], out / "node.log")
    client = DemoClient()
    player = None
    try:
        client.spin_until(lambda: client.query.service_is_ready(), 60, "the node's /pite/query service")
        player = start([sys.executable, "-m", "pite_ros.tools.play", str(video), "--topic", TOPIC, "--frame-id",
                        FRAME_ID, "--wait-subscribers", "2"], out / "player.log")
        client.spin_until(lambda: player.poll() is not None, duration + 90, "the clip to be played")
        if player.returncode != 0:
            raise RuntimeError(f"pite-play failed (see {out / 'player.log'})")
        client.spin_until(lambda: len(client.frames) > 0, 10, "frames on the topic")
        print(f"[3/4] the clip was published ({len(client.frames)} frames); asking {len(questions)} questions")
        caption = None
        for index, item in enumerate(questions):
            print(f"\n--- {item.kind}: {item.prompt}")
            if index == 1:
                print("streamed: ", end="")
                answer = client.ask_streaming(item.prompt, args.timeout)
            else:
                answer = client.ask(item.prompt, args.timeout)
            print(format_answer(answer))
            print(f"reference: {item.reference}")
            caption = caption or answer
        strip = draw_strip(client.frames, caption)
        if strip.shape[0] < 300:  # small synthetic frames: enlarge for the eye, pixels kept sharp
            factor = int(np.ceil(300 / strip.shape[0]))
            strip = cv2.resize(strip, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
        png = out / "tracks.png"
        cv2.imwrite(str(png), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        print(f"\n[4/4] wrote {png}: the clip with the caption's trajectories")
        return 0
    except (TimeoutError, RuntimeError) as error:
        print(f"pite-demo: {error}\n--- node log (last lines):\n{(out / 'node.log').read_text()[-2000:]}",
              file=sys.stderr)
        return 1
    finally:
        client.close()
        for process in (player, node):
            if process is not None:
                stop(process)


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
