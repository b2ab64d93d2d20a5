"""Run inside a Mininet host: send to, receive from, or sniff an IP multicast group.

    mcast_tool.py send GROUP PORT COUNT INTERVAL_S
    mcast_tool.py recv GROUP PORT SECONDS OUT     (joins; writes "seq t_recv" lines)
    mcast_tool.py sniff GROUP SECONDS OUT IFNAME  (no join; counts frames to GROUP)
    mcast_tool.py cycles GROUP PORT N OUT IFNAME  (N join/leave cycles; writes
        "join_latency_s last_frame_after_leave_s" per cycle)
"""

import socket
import struct
import sys
import time


def send(group, port, count, interval):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
    for seq in range(count):
        s.sendto(struct.pack("!Id", seq, time.time()), (group, port))
        time.sleep(interval)


def recv(group, port, seconds, out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port))
    t_join = time.time()
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(group) + socket.inet_aton("0.0.0.0"))
    s.settimeout(0.2)
    end = time.time() + seconds
    with open(out, "w") as f:
        f.write(f"join {t_join}\n")
        while time.time() < end:
            try:
                data = s.recv(2048)
            except socket.timeout:
                continue
            seq, _ = struct.unpack("!Id", data[:12])
            f.write(f"{seq} {time.time()}\n")
            f.flush()
        f.write(f"leave {time.time()}\n")
    s.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP,
                 socket.inet_aton(group) + socket.inet_aton("0.0.0.0"))


def sniff(group, seconds, out, ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.bind((ifname, 0))
    s.settimeout(0.2)
    want = socket.inet_aton(group)
    end = time.time() + seconds
    with open(out, "w") as f:
        while time.time() < end:
            try:
                frame = s.recv(2048)
            except socket.timeout:
                continue
            if frame[30:34] == want:
                f.write(f"{time.time()}\n")
                f.flush()


def cycles(group, port, n, out, ifname):
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    raw.bind((ifname, 0))
    raw.setblocking(False)
    want = socket.inet_aton(group)
    mreq = socket.inet_aton(group) + socket.inet_aton("0.0.0.0")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port))
    s.settimeout(2.0)
    with open(out, "w") as f:
        for _ in range(n):
            t_join = time.time()
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            try:
                s.recv(2048)
                join_latency = time.time() - t_join
            except socket.timeout:
                join_latency = float("inf")
            time.sleep(0.2)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
            t_leave = time.time()
            try:  # forget what was queued before the leave
                while raw.recv(2048):
                    pass
            except BlockingIOError:
                pass
            last = 0.0
            end = t_leave + 1.5
            while time.time() < end:
                try:
                    frame = raw.recv(2048)
                except BlockingIOError:
                    time.sleep(0.002)
                    continue
                if frame[30:34] == want:
                    last = time.time() - t_leave
            while True:  # drain the socket of datagrams received before the leave
                try:
                    s.setblocking(False)
                    s.recv(2048)
                except BlockingIOError:
                    break
                finally:
                    s.settimeout(2.0)
            f.write(f"{join_latency} {last}\n")
            f.flush()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "send":
        send(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif cmd == "recv":
        recv(args[0], int(args[1]), float(args[2]), args[3])
    elif cmd == "sniff":
        sniff(args[0], float(args[1]), args[2], args[3])
    elif cmd == "cycles":
        cycles(args[0], int(args[1]), int(args[2]), args[3], args[4])
