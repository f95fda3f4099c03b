"""Drives one Python tracking SDK, unmodified, against an Orrery ingest.

    python python_driver.py {segment|rudder} HOST_URL WRITE_KEY RUN_ID

Builds the SDK's own Client with only the host (rudder: the data plane URL) and the write
key set, plus on_error and max_retries=0 so that a failure shows at once rather than after
minutes of backoff; everything else (gzip, batching, timeouts) stays the SDK's default.
Sends every call type the SDK has, each tagged with the run id (properties.run, traits.run,
context.app.build, ids prefixed with it), flushes, and prints a JSON summary on stdout:
the messages as the SDK queued them (with the messageIds and timestamps it made), how many
requests it posted and how many it saw succeed, and any error it reported.

Exit 0 only when the SDK reported no error, every call was queued, and every request
succeeded at the first attempt (one success per post: no retry happened).
"""

import importlib
import json
import logging
import sys

# name -> (package as imported, module of its Client, logger it logs to)
SDKS = {
    "segment": ("segment.analytics", "segment.analytics.client", "segment"),
    "rudder": ("rudderstack.analytics", "rudderstack.analytics.client", "rudderstack"),
}


class RequestLog(logging.Handler):
    """Counts the SDK's own log records: one 'making request' per POST it makes, one
    'data uploaded successfully' per POST that succeeded, and every error it logs."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.posts = 0
        self.uploaded = 0
        self.errors = []

    def emit(self, record):
        text = record.getMessage()
        if text.startswith("making request"):
            self.posts += 1
        elif text.startswith("data uploaded successfully"):
            self.uploaded += 1
        if record.levelno >= logging.ERROR:
            self.errors.append(text)


def send_all(client, run):
    user, anon = f"{run}-u1", f"{run}-a1"

    def ctx():
        # A fresh dict a call: the SDKs write context.library (rudder also context.traits) into it.
        return {"app": {"name": "orrery-sdk-matrix", "build": run}}

    calls = [
        client.identify(user_id=user, traits={"run": run, "plan": "pro"}, context=ctx()),
        client.track(user_id=user, event="Order Completed", properties={"run": run, "revenue": 9.5}, context=ctx()),
        client.page(anonymous_id=anon, name="Home", properties={"run": run}, context=ctx()),
        client.screen(user_id=user, name="Cart", properties={"run": run}, context=ctx()),
        client.group(user_id=user, group_id="acme", traits={"run": run}, context=ctx()),
        client.alias(previous_id=anon, user_id=user, context=ctx()),
        client.track(anonymous_id=anon, event="Clicked", properties={"run": run}, context=ctx()),
    ]
    return calls


def main(argv):
    if len(argv) != 5 or argv[1] not in SDKS:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(SDKS)}}} HOST_URL WRITE_KEY RUN_ID")
    sdk, host, write_key, run = argv[1:]
    package, client_module, logger_name = SDKS[sdk]

    requests_seen = RequestLog()
    logger = logging.getLogger(logger_name)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(requests_seen)
    reported = []

    def on_error(error, batch):
        reported.append({"error": str(error), "status": getattr(error, "status", None), "messages": len(batch)})

    client = importlib.import_module(client_module).Client(write_key, host=host, on_error=on_error, max_retries=0)
    calls = send_all(client, run)
    client.flush()
    client.join()

    summary = {
        "sdk": sdk,
        "package": package,
        "version": importlib.import_module(package).VERSION,
        "gzip": client.gzip,
        "sent": [msg for _, msg in calls],
        "queued": all(ok for ok, _ in calls),
        "posts": requests_seen.posts,
        "uploaded": requests_seen.uploaded,
        "errors": reported,
        "logged_errors": requests_seen.errors,
    }
    print(json.dumps(summary))
    ok = summary["queued"] and not reported and not requests_seen.errors and requests_seen.posts == requests_seen.uploaded > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
