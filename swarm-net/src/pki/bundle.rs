//! Root CA bundles as PEM text: the exact bytes a manager serves to joiners and a join token pins.
//!
//! The encoding matches Go's `pem.Encode` (64-column base64, `\n` line ends, a newline after the
//! last line), so the digest of a bundle we produce is computed the way SwarmKit computes it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::info::parse;
use crate::Error;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";
/// Largest bundle accepted from the network (a handful of certificates is a few KiB).
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;

/// DER certificates as consecutive PEM `CERTIFICATE` blocks.
pub fn to_pem(certs: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for der in certs {
        out.push_str(BEGIN);
        out.push('\n');
        let b64 = STANDARD.encode(der);
        for line in b64.as_bytes().chunks(64) {
            // Base64 output is ASCII, so every chunk is valid UTF-8.
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
    }
    out
}

/// Parses a PEM bundle into DER certificates, each of which must parse as X.509. Text outside the
/// blocks is ignored (as Go's decoder does); a bundle with no certificate is an error.
pub fn parse_pem(bundle: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let bad = |reason: String| Error::MalformedCaBundle { reason };
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(bad(format!(
            "{} bytes is more than the {MAX_BUNDLE_BYTES}-byte limit",
            bundle.len()
        )));
    }
    let text = std::str::from_utf8(bundle).map_err(|_| bad("it is not UTF-8 text".into()))?;
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body_start = start + BEGIN.len();
        let len = rest[body_start..]
            .find(END)
            .ok_or_else(|| bad(format!("certificate {} has no END line", certs.len() + 1)))?;
        let body: String = rest[body_start..body_start + len]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|e| bad(format!("certificate {}: bad base64: {e}", certs.len() + 1)))?;
        parse(&der).map_err(|e| bad(format!("certificate {}: {e}", certs.len() + 1)))?;
        certs.push(der);
        rest = &rest[body_start + len + END.len()..];
    }
    if certs.is_empty() {
        return Err(bad("it holds no PEM CERTIFICATE block".into()));
    }
    Ok(certs)
}
