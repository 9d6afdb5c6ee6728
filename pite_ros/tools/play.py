"""``pite-play SOURCE``: publish a video file, a camera or an MCAP bag as a ROS 2 image topic.

SOURCE is a camera index (``0``), an MCAP bag (``.mcap`` or a rosbag2 directory of them) or
a video file. Exits 0 at the end of the source or on Ctrl-C, 1 when SOURCE cannot be read.
"""

from __future__ import annotations

import argparse
import signal
import sys

import rclpy
from rclpy.signals import SignalHandlerOptions

from pite_ros.node.player import BagSource, ImagePlayer, PlayOptions, SourceError, open_source, play
from pite_ros.node.qos import IMAGE_QOS_CHOICES


def _flag(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pite-play", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="video file, camera index, or MCAP bag (file or rosbag2 directory)")
    parser.add_argument("--topic", default="/camera/image_raw", help="image topic to publish (default %(default)s)")
    parser.add_argument("--frame-id", help="header.frame_id of every image (default: a bag's own, else camera)")
    parser.add_argument("--encoding", default="rgb8", choices=("rgb8", "bgr8"), help="image encoding")
    parser.add_argument("--qos", default="reliable", choices=IMAGE_QOS_CHOICES,
                        help="publisher QoS: reliable reaches every subscriber; sensor_data mimics a camera driver "
                             "(default %(default)s)")
    parser.add_argument("--depth", type=int, default=10, help="QoS history depth (default %(default)s)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default %(default)s)")
    parser.add_argument("--loop", action="store_true", help="replay the source until interrupted")
    parser.add_argument("--restamp-loop", type=_flag, default=True, metavar="true|false",
                        help="when looping, keep stamps increasing (true, default) or jump back each pass as a "
                             "real bag loop does (false)")
    parser.add_argument("--use-bag-stamps", action="store_true",
                        help="stamp with the bag's header stamps, not the clock")
    parser.add_argument("--bag-topic", help="image topic of the bag to play (needed when it has several)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: no limit)")
    parser.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                        help="wait for N matched subscribers before the first frame (default %(default)s)")
    parser.add_argument("--wait-timeout", type=float, default=30.0,
                        help="seconds to wait for them before playing anyway (default %(default)s)")
    args = parser.parse_args(argv)
    if args.rate <= 0:
        parser.error("--rate must be positive")
    if args.depth < 1:
        parser.error("--depth must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        source = open_source(args.source, args.bag_topic)
    except SourceError as error:
        print(f"pite-play: error: {error}", file=sys.stderr)
        return 1
    if args.use_bag_stamps and not isinstance(source, BagSource):
        print("pite-play: error: --use-bag-stamps needs a bag source", file=sys.stderr)
        return 1
    options = PlayOptions(rate=args.rate, loop=args.loop, restamp_loop=args.restamp_loop,
                          use_bag_stamps=args.use_bag_stamps, max_frames=args.max_frames)
    # Ctrl-C and SIGTERM end playback through KeyboardInterrupt, so cleanup below always runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    player = ImagePlayer(args.topic, args.frame_id, args.encoding, args.qos, args.depth)
    logger = player.node.get_logger()
    try:
        if args.wait_subscribers and not player.wait_for_subscribers(args.wait_subscribers, args.wait_timeout):
            logger.warning(f"{args.topic}: fewer than {args.wait_subscribers} subscribers after "
                           f"{args.wait_timeout:g} s; playing anyway")
        logger.info(f"playing {source.describe()} on {args.topic} ({args.encoding}, QoS {args.qos})")
        play(source, player.publish, options, now_ns=player.now_ns)
    except KeyboardInterrupt:
        pass
    except SourceError as error:
        print(f"pite-play: error: {error}", file=sys.stderr)
        return 1
    finally:
        logger.info(f"published {player.published} frames")
        player.close()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
