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
