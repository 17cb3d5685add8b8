#!/usr/bin/env python3
"""Propagation delay between secretgen replicas sharing one PostgreSQL database.

    python3 measure.py TOKEN CHANGES PORT_A PORT_B PORT_C

Called by benches/replicas/run.sh. Makes CHANGES configuration changes (PUT on OTP_SMS, the
replica written to rotating among the three); from the moment each PUT's answer arrives, polls
the two other replicas' GET every millisecond (one persistent connection per replica) until
they serve the sequence the PUT answered. Prints one line per figure:
"delay|put p50_ms p99_ms max_ms samples timeouts".
"""
import http.client
import json
import sys
import time

PATH = "/admin/v1/secretgenerators/OTP_SMS"
POLL_SECONDS = 0.001
TIMEOUT_SECONDS = 5.0  # per change; a replica that takes longer counts as a timeout


def request(conn, method, body, headers):
    conn.request(method, PATH, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        sys.exit(f"{method} {PATH} on port {conn.port}: {resp.status} {data[:200]!r}")
    return json.loads(data)


def percentile(sorted_values, p):
    """Nearest rank."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def summary(name, values_s, timeouts):
    v = sorted(x * 1000 for x in values_s)
    print(f"{name} {percentile(v, 50):.2f} {percentile(v, 99):.2f} "
          f"{(v[-1] if v else float('nan')):.2f} {len(v)} {timeouts}")


def main():
    token, changes, ports = sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3:6]]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=10) for p in ports]
    current = request(conns[0], "GET", None, headers)["secretGenerator"]
    length = current["length"]
    seq = int(current["details"]["sequence"])
    delays, puts, timeouts = [], [], 0
    for i in range(changes):
        writer = i % 3
        length = 6 + (length - 5) % 7  # 6..12, always other than the current length
        body = json.dumps({"length": length, "expiry": "300s", "includeDigits": True})
        start = time.perf_counter()
        answer = request(conns[writer], "PUT", body, headers)
        answered = time.perf_counter()
        puts.append(answered - start)
        target = int(answer["details"]["sequence"])
        if target <= seq:
            sys.exit(f"change {i}: sequence {target} did not grow past {seq}")
        seq = target
        pending = {r for r in range(3) if r != writer}
        while pending:
            for r in sorted(pending):
                got = request(conns[r], "GET", None, headers)["secretGenerator"]["details"]
                if int(got["sequence"]) >= target:
                    delays.append(time.perf_counter() - answered)
                    pending.discard(r)
            if time.perf_counter() - answered > TIMEOUT_SECONDS:
                timeouts += len(pending)
                break
            if pending:
                time.sleep(POLL_SECONDS)
    summary("delay", delays, timeouts)
    summary("put", puts, 0)


if __name__ == "__main__":
    try:
        main()
    except (OSError, http.client.HTTPException, KeyboardInterrupt) as e:
        sys.exit(f"measure.py stopped: {e!r}")
