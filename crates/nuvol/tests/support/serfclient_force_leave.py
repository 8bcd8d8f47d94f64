"""force-leave through serfclient (PyPI), an RPC client independent of serf
and nuvol: `python3 serfclient_force_leave.py HOST PORT NODE`.

Prints the response as one JSON object: {"head": {...}, "body": ...}, the
response header without its sequence number (serf's responseHeader: the
"Error" string) and the body (None: force-leave has none). Exits 1, with the
exception on stderr, when the call itself fails (connection, timeout).
"""

import json
import sys

from serfclient import SerfClient


def text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def main():
    host, port, node = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = SerfClient(host=host, port=port, timeout=10)
    try:
        result = client.force_leave(node)
    finally:
        client.close()
    head = {text(k): text(v) for k, v in (result.head or {}).items()}
    head.pop("Seq", None)
    print(json.dumps({"head": head, "body": result.body}, sort_keys=True))


if __name__ == "__main__":
    main()
