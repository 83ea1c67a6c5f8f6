"""What a client's peer connections used, as the lab records it: counts per transport and
encryption, payload received per transport, and the list itself. Shared by peer.py
(libtorrent) and qbt.py (qBittorrent); each builds the per-connection dicts its own way."""


def summarize(conns):
    conns = sorted(conns, key=lambda c: (c["endpoint"], c["transport"]))
    s = {"utp": 0, "tcp": 0, "rc4": 0, "mse_plaintext": 0, "plain": 0,
         "payload_bytes_received_utp": 0, "payload_bytes_received_tcp": 0}
    for c in conns:
        s[c["transport"]] += 1
        s[c["encryption"]] += 1
        s["payload_bytes_received_" + c["transport"]] += c["payload_bytes_received"]
    s["list"] = conns
    return s
