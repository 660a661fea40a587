//! The Docker test image: built once per machine by `build-test-image.sh` beside this file.

use std::path::Path;
use std::sync::OnceLock;

/// The image the docker tests run.
pub const IMAGE: &str = "swarm-test/busybox:latest";

/// The Docker socket the tests use.
pub const SOCKET: &str = "/var/run/docker.sock";

/// Makes sure the test image exists and returns its name; `None` (after [`super::skip::skip`],
/// for every caller: a loud note, a failure in CI) when this machine has no Docker socket. Panics
/// if the socket exists but the image cannot be built: that is a broken test setup, not a reason
/// to skip.
pub fn ensure() -> Option<&'static str> {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let ok = *BUILT.get_or_init(|| {
        if !Path::new(SOCKET).exists() {
            return false;
        }
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/build-test-image.sh");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .arg(IMAGE)
            .status()
            .expect("running build-test-image.sh");
        assert!(
            status.success(),
            "building the docker test image failed ({status})"
        );
        true
    });
    if !ok {
        super::skip::skip(&format!(
            "no Docker socket at {SOCKET}; the docker adapter needs an engine"
        ));
    }
    ok.then_some(IMAGE)
}
