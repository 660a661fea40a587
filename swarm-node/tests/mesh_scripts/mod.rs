//! The Python programs the multi-host mesh tests run as tasks and clients (`multihost_mesh`).
#![allow(dead_code)]

/// A TCP echo server: `echo.py <port> <tag>` answers every chunk with `<tag>:<chunk>` (`$TAG`
/// replaces `<tag>` when set).
const ECHO: &str = r#"
import os, socket, sys, threading
port, tag = int(sys.argv[1]), os.environ.get("TAG", sys.argv[2]).encode()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(tag + b":" + d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A UDP echo server: `udp_echo.py <port> <tag>` answers every datagram with `<tag>:<datagram>`.
const UDP_ECHO: &str = r#"
import socket, sys
port, tag = int(sys.argv[1]), sys.argv[2].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))
while True:
    d, a = s.recvfrom(65536)
    s.sendto(tag + b":" + d, a)
"#;

/// A UDP client: `udp_client.py <port> <size>` sends `ping` (size 0) or `size` bytes of `x` to
/// the port and prints `<port> <reply>` (for `ping`) or `<port> <tag> len=<n>`, or
/// `<port> timeout` when nothing came back within 2 s.
const UDP_CLIENT: &str = r#"
import socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"x" * size if size else b"ping", ("127.0.0.1", port))
try:
    r = s.recv(65536)
    if size:
        tag, _, body = r.partition(b":")
        print(port, tag.decode(), "len=%d" % len(body) if body == b"x" * size else "garbled")
    else:
        print(port, r.decode())
except socket.timeout:
    print(port, "timeout")
"#;

/// A client: `client.py hold|once <port>...` connects to each port, sends `ping`, prints
/// `<port> <reply>`; with `hold`, prints `ready`, waits for a line on stdin, then sends `again`
/// on each connection and prints `<port> <reply>` or `<port> closed`.
const CLIENT: &str = r#"
import socket, sys
mode, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
conns = []
for p in ports:
    try:
        c = socket.create_connection(("127.0.0.1", p), timeout=10)
        c.sendall(b"ping")
        r = c.recv(65536)
        print(p, r.decode() if r else "closed", flush=True)
        conns.append((p, c))
    except OSError as e:
        print(p, "error", e, flush=True)
if mode == "hold":
    print("ready", flush=True)
    sys.stdin.readline()
    for p, c in conns:
        try:
            c.settimeout(60)
            c.sendall(b"again")
            r = c.recv(65536)
            print(p, r.decode() if r else "closed", flush=True)
        except OSError:
            print(p, "closed", flush=True)
"#;

/// A request loop: `loop.py <port> <stop file>`: a new connection per request (`ping`, then
/// the echo), back to back, until the stop file exists; then prints
/// `ok=<n> fail=<n> tags=<tag,...>` and the first failures.
const LOOP: &str = r#"
import os, socket, sys, time
port, stop = int(sys.argv[1]), sys.argv[2]
ok, fails, tags = 0, [], set()
while not os.path.exists(stop):
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"ping")
        r = c.recv(65536)
        c.close()
        if r.endswith(b":ping"):
            ok += 1
            tags.add(r.decode().split(":")[0])
        else:
            fails.append("reply %r" % r)
    except OSError as e:
        fails.append(str(e))
    time.sleep(0.02)
print("ok=%d fail=%d tags=%s" % (ok, len(fails), ",".join(sorted(tags))))
for f in fails[:5]:
    print("failure:", f)
"#;

/// Writes the scripts into `dir`; their paths.
pub fn scripts(dir: &std::path::Path) -> (String, String) {
    let echo = dir.join("echo.py");
    let client = dir.join("client.py");
    std::fs::write(&echo, ECHO).unwrap();
    std::fs::write(&client, CLIENT).unwrap();
    std::fs::write(dir.join("loop.py"), LOOP).unwrap();
    std::fs::write(dir.join("udp_echo.py"), UDP_ECHO).unwrap();
    std::fs::write(dir.join("udp_client.py"), UDP_CLIENT).unwrap();
    std::fs::write(dir.join("canary.py"), CANARY).unwrap();
    std::fs::write(dir.join("vip_client.py"), VIP_CLIENT).unwrap();
    (
        echo.to_str().unwrap().to_string(),
        client.to_str().unwrap().to_string(),
    )
}

/// A one-shot client: `canary.py tcp|udp <ip> <port> <body>` sends `body` (TCP: on a new
/// connection; UDP: one datagram) and prints the reply, or `none` when nothing came back within
/// 5 s.
pub const CANARY: &str = r#"
import socket, sys
proto, ip, port, body = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(5)
try:
    s.connect((ip, port))
    s.sendall(body)
    print(s.recv(65536).decode())
except OSError:
    print("none")
"#;

/// A task of `multihost_vip`: `vip_client.py <out> <other vip> <other port> <db port>` asks the
/// resolver named by `$SWARM_RESOLVER` (UDP, and TCP once) for `db`, `tasks.db`, `rr`, `other`
/// and `other.back`, connects to `db`'s answer on `<db port>` and to `<other vip>:<other port>`,
/// and every second rewrites `<out>` with one line per check: `<check> <result>` (addresses
/// comma-separated and sorted, `NXDOMAIN`, `rcode<N>`, the echo's reply, or `error`).
pub const VIP_CLIENT: &str = r#"
import os, random, socket, struct, sys, time
out, other_vip, other_port, db_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
host, port = os.environ["SWARM_RESOLVER"].rsplit(":", 1)
port = int(port)
def recvn(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise OSError("closed")
        b += d
    return b
def query(name, tcp=False):
    try:
        q = struct.pack("!HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
        for l in name.split("."):
            q += bytes([len(l)]) + l.encode()
        q += b"\0" + struct.pack("!HH", 1, 1)
        if tcp:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(struct.pack("!H", len(q)) + q)
            r = recvn(s, struct.unpack("!H", recvn(s, 2))[0])
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.sendto(q, (host, port))
            r = s.recv(4096)
        s.close()
        rcode, an = r[3] & 0xF, struct.unpack("!H", r[6:8])[0]
        i = 12
        while r[i] != 0:
            i += r[i] + 1
        i += 5
        ips = []
        for _ in range(an):
            if r[i] & 0xC0 == 0xC0:
                i += 2
            else:
                while r[i] != 0:
                    i += r[i] + 1
                i += 1
            typ, _, _, rdlen = struct.unpack("!HHIH", r[i:i + 10])
            i += 10
            if typ == 1:
                ips.append(socket.inet_ntoa(r[i:i + 4]))
            i += rdlen
        if rcode == 3:
            return "NXDOMAIN"
        if rcode:
            return "rcode%d" % rcode
        return ",".join(sorted(ips)) or "empty"
    except OSError:
        return "error"
def talk(ip, p):
    try:
        s = socket.create_connection((ip, p), timeout=3)
        s.sendall(b"ping")
        d = s.recv(100).decode()
        s.close()
        return d or "closed"
    except OSError:
        return "error"
while True:
    db = query("db")
    lines = ["db " + db, "db.tcp " + query("db", tcp=True), "tasks.db " + query("tasks.db"),
             "rr " + query("rr"), "other " + query("other"), "other.back " + query("other.back"),
             "talk.db " + (talk(db, db_port) if db[:1].isdigit() else "unresolved"),
             "talk.other " + talk(other_vip, other_port)]
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, out)
    time.sleep(1)
"#;
