//! Cross-checks of generated certificates with the `openssl` CLI, an independent X.509
//! implementation: root and node certificates carry the fields SwarmKit's do, chains verify (and
//! fail to verify) where they should, including both paths of a root rotation, and a CSR made by
//! openssl is accepted with its subject overridden. Prints a loud SKIPPED if `openssl` is absent
//! (CI installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use swarm_net::pki::bundle::to_pem;
use swarm_net::pki::testing::{system_now, TestPki};
use swarm_net::pki::{
    CertInfo, PrivateKey, RootRotation, TlsMaterial, DEFAULT_NODE_CERT_VALIDITY,
    MIN_NODE_CERT_VALIDITY,
};
use swarm_net::{NodeIdentity, Role};

fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n**********\nSKIPPED: {why}; this openssl cross-check did not run\n**********"
    );
}

/// Runs openssl; `Ok(stdout)` on success, `Err(stderr + stdout)` on failure. `None` if absent.
fn openssl(args: &[&str]) -> Option<Result<String, String>> {
    let out = Command::new("openssl").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Some(Ok(text))
    } else {
        Some(Err(format!(
            "{}{text}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn have_openssl() -> bool {
    if openssl(&["version"]).is_some_and(|r| r.is_ok()) {
        return true;
    }
    skipped("the openssl CLI is not installed");
    false
}

fn write_pem(dir: &Path, name: &str, certs: &[Vec<u8>]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, to_pem(certs)).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn verify(
    ca: &Path,
    untrusted: Option<&Path>,
    leaf: &Path,
    at: Option<u64>,
) -> Result<String, String> {
    let at = at.map(|t| t.to_string());
    let mut args = vec!["verify", "-x509_strict", "-CAfile", s(ca)];
    if let Some(u) = untrusted {
        args.extend(["-untrusted", s(u)]);
    }
    if let Some(t) = &at {
        args.extend(["-attime", t]);
    }
    args.push(s(leaf));
    openssl(&args).unwrap()
}

fn text(cert: &Path) -> String {
    openssl(&["x509", "-noout", "-text", "-in", s(cert)])
        .unwrap()
        .unwrap()
}

#[test]
fn root_and_node_certificates_have_swarmkits_fields() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut pki = TestPki::new(21, system_now());
    let root = write_pem(dir.path(), "root.pem", &[pki.root_der()]);
    let root_text = text(&root);
    for want in [
        "Subject: CN = swarm-ca",
        "Issuer: CN = swarm-ca",
        "ASN1 OID: prime256v1",
        "ecdsa-with-SHA256",
        "CA:TRUE",
        "Certificate Sign, CRL Sign",
    ] {
        assert!(
            root_text.contains(want),
            "root lacks {want:?}:\n{root_text}"
        );
    }
    // Our PEM encoding is byte-for-byte what openssl writes, so bundle digests agree with SwarmKit's.
    let reencoded = openssl(&["x509", "-in", s(&root)]).unwrap().unwrap();
    assert_eq!(reencoded, pki.ca().bundle_pem());

    for role in [Role::Worker, Role::Manager] {
        let node = pki.node(role);
        let who = node.identity();
        let leaf = write_pem(dir.path(), "leaf.pem", &node.chain()[..1]);
        let subject = openssl(&[
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
            "-in",
            s(&leaf),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            subject.trim(),
            format!(
                "subject=O={},OU={},CN={}",
                who.cluster_id,
                role.ou(),
                who.node_id
            )
        );
        let t = text(&leaf);
        let mut sans = format!("DNS:{}, DNS:{}", role.ou(), who.node_id);
        if role == Role::Manager {
            sans.push_str(", DNS:swarm-ca");
        }
        for want in [
            sans.as_str(),
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "CA:FALSE",
            "Issuer: CN = swarm-ca",
        ] {
            assert!(t.contains(want), "{role} certificate lacks {want:?}:\n{t}");
        }
        for purpose in ["sslserver", "sslclient"] {
            let ok =
                openssl(&["verify", "-purpose", purpose, "-CAfile", s(&root), s(&leaf)]).unwrap();
            assert!(ok.is_ok(), "{purpose}: {ok:?}");
        }
        let ok = verify(&root, None, &leaf, None);
        assert!(ok.as_deref().is_ok_and(|o| o.contains(": OK")), "{ok:?}");
    }
}

#[test]
fn wrong_ca_and_expiry_fail_verification() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let now = system_now();
    let mut pki = TestPki::new(22, now);
    let other = TestPki::new(23, now);
    let root = write_pem(dir.path(), "root.pem", &[pki.root_der()]);
    let foreign = write_pem(dir.path(), "foreign.pem", &[other.root_der()]);
    let who = pki.identity(Role::Worker);
    let node = pki.node_as(who, MIN_NODE_CERT_VALIDITY, now);
    let leaf = write_pem(dir.path(), "leaf.pem", node.chain());
    let info = CertInfo::parse(node.leaf()).unwrap();
    let secs = |t: swarm_core::Timestamp| t.as_nanos() / 1_000_000_000;

    assert!(verify(&root, None, &leaf, None).is_ok());
    let err = verify(&foreign, None, &leaf, None).unwrap_err();
    assert!(
        err.contains("unable to get local issuer certificate"),
        "{err}"
    );
    // Valid from one hour before issue to one hour after; outside that openssl refuses it.
    assert!(verify(&root, None, &leaf, Some(secs(info.not_before) + 1)).is_ok());
    let err = verify(&root, None, &leaf, Some(secs(info.not_after) + 1)).unwrap_err();
    assert!(err.contains("certificate has expired"), "{err}");
    let err = verify(&root, None, &leaf, Some(secs(info.not_before) - 1)).unwrap_err();
    assert!(err.contains("not yet valid"), "{err}");
    assert_eq!(
        info.not_after.since(info.not_before),
        Duration::from_secs(7200)
    );
}

#[test]
fn rotation_chain_verifies_under_old_and_new_root_alone() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let now = system_now();
    let mut rng = ChaCha20Rng::seed_from_u64(24);
    let mut pki = TestPki::new(24, now);
    let old_node = pki.node(Role::Worker);
    let rotation =
        RootRotation::start(pki.ca(), PrivateKey::generate().unwrap(), now, &mut rng).unwrap();
    let old_root = write_pem(dir.path(), "old.pem", &[pki.root_der()]);
    let new_root = write_pem(
        dir.path(),
        "new.pem",
        &[rotation.signer().cert_der().to_vec()],
    );
    let cross = write_pem(dir.path(), "cross.pem", &[rotation.cross_signed().to_vec()]);
    pki.set_ca(rotation.signer().clone());
    let who = pki.identity(Role::Manager);
    let node = pki.node_as(who, DEFAULT_NODE_CERT_VALIDITY, now);
    let leaf = write_pem(dir.path(), "leaf.pem", &node.chain()[..1]);
    let old_leaf = write_pem(dir.path(), "old_leaf.pem", &old_node.chain()[..1]);

    assert!(
        verify(&old_root, Some(&cross), &leaf, None).is_ok(),
        "old root via cross-signed"
    );
    assert!(
        verify(&new_root, None, &leaf, None).is_ok(),
        "new root alone"
    );
    assert!(
        verify(&old_root, None, &leaf, None).is_err(),
        "old root without the bridge"
    );
    assert!(verify(&old_root, None, &old_leaf, None).is_ok());
    assert!(verify(&new_root, None, &old_leaf, None).is_err());
    let cross_text = text(&cross);
    assert!(cross_text.contains("CA:TRUE") && cross_text.contains("Subject: CN = swarm-ca"));
}

#[test]
fn an_openssl_csr_is_signed_with_the_subject_overridden() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key.pem");
    let csr_path = dir.path().join("csr.der");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=evil/OU=swarm-manager/O=someone-else",
        "-keyout",
        s(&key_path),
        "-outform",
        "DER",
        "-out",
        s(&csr_path),
    ])
    .unwrap()
    .unwrap();
    let key_der = openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-outform",
        "DER",
        "-in",
        s(&key_path),
        "-out",
        s(&dir.path().join("key.der")),
    ]);
    key_der.unwrap().unwrap();
    let key =
        PrivateKey::from_pkcs8_der(&std::fs::read(dir.path().join("key.der")).unwrap()).unwrap();
    let csr = std::fs::read(&csr_path).unwrap();

    let mut pki = TestPki::new(25, system_now());
    let who: NodeIdentity = pki.identity(Role::Worker);
    let mut rng = ChaCha20Rng::seed_from_u64(25);
    let issued = pki
        .ca()
        .issue(
            &csr,
            &who,
            DEFAULT_NODE_CERT_VALIDITY,
            system_now(),
            &mut rng,
        )
        .unwrap();
    // The certificate names the CA's choice, and holds openssl's key.
    let material = TlsMaterial::new(issued.chain, key, vec![pki.root_der()]).unwrap();
    assert_eq!(material.identity(), who);
    let root = write_pem(dir.path(), "root.pem", &[pki.root_der()]);
    let leaf = write_pem(dir.path(), "leaf.pem", material.chain());
    assert!(verify(&root, None, &leaf, None).is_ok());
    // And our own CSRs pass openssl's signature check.
    let ours = dir.path().join("ours.der");
    std::fs::write(&ours, swarm_net::pki::make_csr(material.key()).unwrap()).unwrap();
    let ok = openssl(&[
        "req",
        "-verify",
        "-noout",
        "-inform",
        "DER",
        "-in",
        s(&ours),
    ])
    .unwrap();
    assert!(ok.is_ok(), "{ok:?}");
}
