"""Runs a Pulumi Python program for the project's language host (main.go embeds this file).

Started as ``python -u -c <this> --monitor ADDR --engine ADDR ... PROGRAM [ARGS]`` in the project's venv:
configures pulumi.runtime from the arguments and PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS, then runs
PROGRAM (a file or a folder with ``__main__.py``) inside the SDK's stack. Exit code 32 tells the host the
error was already logged to the engine.
"""

import argparse
import asyncio
import logging
import os
import runpy
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor

import pulumi
import pulumi.runtime

LOGGED_EXIT = 32


def main() -> int:
    parser = argparse.ArgumentParser(description="run a Pulumi Python program")
    for name in ("project", "root_directory", "stack", "parallel", "dry_run", "pwd", "monitor", "engine"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--tracing")
    parser.add_argument("--organization")
    parser.add_argument("program")
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()

    pulumi.runtime.set_all_config(
        pulumi.runtime.get_config_env(), pulumi.runtime.get_config_secret_keys_env()
    )
    settings = pulumi.runtime.Settings(
        monitor=args.monitor,
        engine=args.engine,
        project=args.project,
        stack=args.stack,
        parallel=int(args.parallel or 0),
        dry_run=args.dry_run == "true",
        organization=args.organization,
        root_directory=args.root_directory,
    )
    pulumi.runtime.configure(settings)
    sys.argv = [args.program, *args.args]
    if args.pwd:
        os.chdir(args.pwd)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    executor = ThreadPoolExecutor(max_workers=max(int(args.parallel or 1), 1) * 4)
    loop.set_default_executor(executor)
    # The SDK leaves futures unobserved when a program fails; asyncio's complaints about them are noise.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    program = os.path.abspath(args.program)

    def run_program() -> None:
        runpy.run_path(program, run_name="__main__")

    try:
        loop.run_until_complete(pulumi.runtime.run_in_stack(run_program))
        return 0
    except pulumi.RunError as exc:
        pulumi.log.error(str(exc))
        return 1
    except Exception:
        pulumi.log.error("Program failed with an unhandled exception:\n" + traceback.format_exc())
        return LOGGED_EXIT
    finally:
        executor.shutdown(wait=True)
        loop.close()
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
