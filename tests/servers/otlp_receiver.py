#!/usr/bin/env python3
"""OTLP/HTTP metrics receiver for badger's tests (tests/servers/otlp.rs).

Decodes each POST /v1/metrics body with the official OTLP protobuf definitions (PyPI
opentelemetry-proto) and writes one JSON line per request and per data point to --out.
Prints "port N" on stdout once it listens on 127.0.0.1.

--answers: how to answer the requests in turn, comma separated; the last one repeats.
  200            200 with an empty ExportMetricsServiceResponse
  partial:N      200 with partial_success.rejected_data_points = N
  CODE[:SECS]    that status (e.g. 400, 503:2 = 503 with Retry-After: 2), body a google.rpc.Status
"""
import argparse
import gzip
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict  # noqa: F401 (checks protobuf is there)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

MAX_BODY = 64 * 1024 * 1024


def any_value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return [[kv.key, any_value(kv.value)] for kv in kvs]


def flatten(req):
    for rm in req.resource_metrics:
        resource = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                for dp in data.data_points:
                    vk = dp.WhichOneof("value")
                    yield {
                        "kind": "point",
                        "resource": resource,
                        "scope": [sm.scope.name, sm.scope.version],
                        "name": m.name,
                        "unit": m.unit,
                        "type": kind,
                        "temporality": getattr(data, "aggregation_temporality", 0),
                        "monotonic": getattr(data, "is_monotonic", False),
                        "attributes": attrs(dp.attributes),
                        "start": dp.start_time_unix_nano,
                        "time": dp.time_unix_nano,
                        "value_type": vk,
                        "value": getattr(dp, vk) if vk else None,
                    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--answers", default="200")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    answers = args.answers.split(",")
    lock = threading.Lock()
    state = {"n": 0}
    out = open(args.out, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            if length > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length)
            with lock:
                n = state["n"]
                state["n"] += 1
                answer = answers[min(n, len(answers) - 1)]
                record = {
                    "kind": "request",
                    "n": n,
                    "t": time.time(),
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "content_encoding": self.headers.get("Content-Encoding"),
                    "authorization": self.headers.get("Authorization"),
                    "answer": answer,
                }
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                req = ExportMetricsServiceRequest()
                req.ParseFromString(body)
                record["points"] = sum(1 for _ in flatten(req))
                out.write(json.dumps(record) + "\n")
                if answer == "200" or answer.startswith("partial:"):
                    for p in flatten(req):
                        out.write(json.dumps(p) + "\n")
            resp = ExportMetricsServiceResponse()
            status = 200
            retry_after = None
            if answer.startswith("partial:"):
                resp.partial_success.rejected_data_points = int(answer.split(":")[1])
                resp.partial_success.error_message = "test receiver drops some"
            elif answer != "200":
                code, _, secs = answer.partition(":")
                status = int(code)
                retry_after = secs or None
            if status == 200:
                payload = resp.SerializeToString()
            else:
                # google.rpc.Status { code = 3, message = "..." }
                msg = f"test receiver answers {status}".encode()
                payload = b"\x08\x03\x12" + bytes([len(msg)]) + msg
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            if retry_after:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
