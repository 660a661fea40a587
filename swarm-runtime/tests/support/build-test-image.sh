#!/usr/bin/env bash
# Builds the Docker test image of swarm-runtime, swarm-test/busybox:latest, from Debian's
# statically linked busybox (package busybox-static, installed here if missing and we are root).
# The image is `FROM scratch` in effect: /bin/busybox, one symlink per applet (sh, sleep, cat,
# stat, httpd, wget...), /etc/passwd and /etc/group with root and nobody, and a /tmp. It is made
# with `docker import`, so no registry and no builder are needed. Idempotent; concurrent runs
# serialise on a lock file.
#
# Usage: build-test-image.sh [IMAGE]    (default swarm-test/busybox:latest)
set -euo pipefail
IMAGE="${1:-swarm-test/busybox:latest}"

exec 9>/tmp/swarm-test-image.lock
flock 9

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

BB=/bin/busybox
if [ ! -x "$BB" ] || ldd "$BB" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing busybox-static for the test image" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >/dev/null \
            || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >/dev/null; }
    fi
fi
if [ ! -x "$BB" ] || ldd "$BB" >/dev/null 2>&1; then
    echo "error: $BB is missing or not statically linked; install Debian's busybox-static" >&2
    exit 1
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/root"
chmod 1777 "$dir/tmp"
cp "$BB" "$dir/bin/busybox"
for applet in $("$BB" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$dir/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$dir/etc/group"
tar -C "$dir" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$IMAGE" >/dev/null
echo "built $IMAGE" >&2
