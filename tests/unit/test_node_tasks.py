"""A daemon's background tasks: one that dies says so at once (a log line and a
``task_failed`` record) instead of leaving the run to go on without it; cancelling at
shutdown is not a failure."""

import asyncio
import json

import uvloop

from testbed.nodes import common as C


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _play(events):
    async def dies():
        await asyncio.sleep(0)
        raise RuntimeError("send buffer gone")

    async def lives():
        await asyncio.sleep(60)

    tasks = C.watch(events, [asyncio.get_running_loop().create_task(dies(), name="live v1"),
                             asyncio.get_running_loop().create_task(lives(), name="pingback")])
    await asyncio.sleep(0.01)
    await C.cancel_tasks(tasks)


def test_a_task_that_dies_is_recorded_and_a_cancelled_one_is_not(tmp_path):
    events = C.EventLog(tmp_path / "m1.jsonl", "m1", C.Clock(0.0))
    uvloop.run(_play(events))  # the daemons' loop
    events.close()
    failed = [r for r in records(tmp_path / "m1.jsonl") if r["kind"] == "task_failed"]
    assert [(r["task"], r["error"]) for r in failed] == \
        [("live v1", "RuntimeError('send buffer gone')")]
