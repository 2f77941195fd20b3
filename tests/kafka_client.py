#!/usr/bin/env python3
"""A third-party Kafka client for veriflow's end-to-end tests (confluent-kafka).

The tests use it so that what goes into and comes out of the broker is checked by a
client that is not ours:

  ping     --brokers B                       exit 0 when the broker answers metadata
  create   --brokers B --topic T --partitions N
  produce  --brokers B --topic T FILE        FILE: JSON lines {"key", "value"|"value_b64"}
           [--events]                        or, with --events, raw event lines keyed by tenant_id
  consume  --brokers B --topic T --count N   print N records as JSON lines, then exit
           [--timeout S]                     (key, value_b64, headers, partition, offset)
"""
import argparse
import base64
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def ping(args):
    AdminClient({"bootstrap.servers": args.brokers}).list_topics(timeout=5)


def create(args):
    admin = AdminClient({"bootstrap.servers": args.brokers})
    futures = admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)])
    for f in futures.values():
        f.result(timeout=30)


def records(path, events):
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if not line.strip():
                continue
            if events:
                try:
                    key = json.loads(line).get("tenant_id")
                except (ValueError, AttributeError):
                    key = None
                yield key, line
            else:
                rec = json.loads(line)
                value = base64.b64decode(rec["value_b64"]) if "value_b64" in rec else rec["value"].encode()
                yield rec.get("key"), value


def produce(args):
    producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True, "linger.ms": 5})
    failures = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))

    count = 0
    for i, (key, value) in enumerate(records(args.file, args.events)):
        if i < args.skip:
            continue
        if args.limit is not None and i >= args.skip + args.limit:
            break
        while True:
            try:
                producer.produce(args.topic, value=value, key=key.encode() if isinstance(key, str) else None,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    remaining = producer.flush(60)
    if remaining or failures:
        sys.exit(f"produce: {remaining} undelivered, failures: {failures[:3]}")
    print(json.dumps({"produced": count}))


def encode(msg):
    """One consumed record as a JSON line (bytes as base64, so nothing is lost)."""
    headers = {k: base64.b64encode(v or b"").decode() for k, v in (msg.headers() or [])}
    return json.dumps({
        "key": msg.key().decode() if msg.key() is not None else None,
        "value_b64": base64.b64encode(msg.value() or b"").decode(),
        "headers_b64": headers,
        "partition": msg.partition(),
        "offset": msg.offset(),
    }) + "\n"


def consume(args):
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"veriflow-test-reader-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    got = 0
    deadline = time.monotonic() + args.timeout
    out = sys.stdout
    while got < args.count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            sys.exit(f"consume: {msg.error()}")
        out.write(encode(msg))
        got += 1
    # Linger briefly so that records beyond the expected count are noticed.
    extra_deadline = time.monotonic() + args.linger
    while time.monotonic() < extra_deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            out.write(encode(msg))
            got += 1
    consumer.close()
    if got < args.count:
        sys.exit(f"consume: only {got} of {args.count} records from {args.topic} within {args.timeout}s")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ping"); s.add_argument("--brokers", required=True); s.set_defaults(fn=ping)
    s = sub.add_parser("produce"); s.add_argument("--brokers", required=True); s.add_argument("--topic", required=True)
    s.add_argument("file"); s.add_argument("--events", action="store_true")
    s.add_argument("--skip", type=int, default=0); s.add_argument("--limit", type=int, default=None)
    s.set_defaults(fn=produce)
    s = sub.add_parser("create"); s.add_argument("--brokers", required=True); s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, default=4); s.set_defaults(fn=create)
    s = sub.add_parser("consume"); s.add_argument("--brokers", required=True); s.add_argument("--topic", required=True)
    s.add_argument("--count", type=int, required=True); s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--linger", type=float, default=0); s.set_defaults(fn=consume)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
