"""python-zeroconf side of nuvol-mdns's interop tests.

  zc_helper.py browse IFACE_ADDR TYPE...
      print a JSON line per added/updated/removed service of the given types
  zc_helper.py register IFACE_ADDR TYPE NAME PORT HOST [k=v ...]
      register one service, print "ready", keep it until stdin closes
"""
import json
import sys
import threading

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf
import socket


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def browse(addr, types):
    zc = Zeroconf(interfaces=[addr], ip_version=IPVersion.V4Only)

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Removed:
            out({"event": "removed", "type": service_type, "name": name})
            return
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        if info is None:
            out({"event": "unresolved", "type": service_type, "name": name})
            return
        props = {}
        for k, v in info.properties.items():
            if not k:
                continue  # an empty TXT record is one empty string
            props[k.decode("utf-8", "replace")] = None if v is None else v.decode("utf-8", "replace")
        out({
            "event": "added" if state_change is ServiceStateChange.Added else "updated",
            "type": service_type,
            "name": name,
            "server": info.server,
            "port": info.port,
            "addrs": info.parsed_addresses(),
            "txt": props,
        })

    ServiceBrowser(zc, types, handlers=[on_change])
    out({"event": "ready"})
    sys.stdin.read()
    zc.close()


def register(addr, stype, name, port, host, kvs):
    zc = Zeroconf(interfaces=[addr], ip_version=IPVersion.V4Only)
    props = {}
    for kv in kvs:
        k, v = kv.split("=", 1)
        props[k] = v
    info = ServiceInfo(
        stype,
        name + "." + stype,
        addresses=[socket.inet_aton(addr)],
        port=int(port),
        properties=props,
        server=host,
    )
    zc.register_service(info)
    out({"event": "ready"})
    sys.stdin.read()
    zc.unregister_service(info)
    zc.close()


def main():
    if sys.argv[1] == "browse":
        browse(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "register":
        register(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:])
    else:
        sys.exit("unknown mode")


if __name__ == "__main__":
    main()
