//! Service templates: `{{.Service.Name}}`-style placeholders in hostname, env and mount paths.
//!
//! A hand-written parser for the small subset of Go templates Docker documents for services:
//! `{{.Service.ID}} {{.Service.Name}} {{.Service.Labels}} {{.Node.ID}} {{.Node.Hostname}}
//! {{.Node.Platform.OS}} {{.Node.Platform.Architecture}} {{.Task.ID}} {{.Task.Name}} {{.Task.Slot}}`,
//! plus `{{index .Service.Labels "key"}}`. Spaces inside the braces are allowed. Anything else
//! between `{{` and `}}` is an error naming the placeholder; the parser never panics.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thiserror::Error;

/// The values placeholders expand to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateContext {
    /// `{{.Service.ID}}`.
    pub service_id: String,
    /// `{{.Service.Name}}`.
    pub service_name: String,
    /// `{{.Service.Labels}}` (printed as Go prints a map: `map[k:v k2:v2]`).
    pub service_labels: BTreeMap<String, String>,
    /// `{{.Node.ID}}`.
    pub node_id: String,
    /// `{{.Node.Hostname}}`.
    pub node_hostname: String,
    /// `{{.Node.Platform.OS}}`.
    pub node_os: String,
    /// `{{.Node.Platform.Architecture}}`.
    pub node_arch: String,
    /// `{{.Task.ID}}`.
    pub task_id: String,
    /// `{{.Task.Name}}`.
    pub task_name: String,
    /// `{{.Task.Slot}}` (the node id for global tasks, as in SwarmKit).
    pub task_slot: String,
}

/// The placeholders [`expand`] knows, for error messages.
pub const KNOWN_PLACEHOLDERS: &[&str] = &[
    ".Service.ID",
    ".Service.Name",
    ".Service.Labels",
    ".Node.ID",
    ".Node.Hostname",
    ".Node.Platform.OS",
    ".Node.Platform.Architecture",
    ".Task.ID",
    ".Task.Name",
    ".Task.Slot",
];

/// Why a template could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// A `{{` without its `}}`.
    #[error(
        "template error in {field} {input:?}: '{{{{' at byte {at} is never closed with '}}}}'"
    )]
    Unclosed {
        /// Which field (`hostname`, `env`, `mount source`, `mount target`).
        field: String,
        /// The template.
        input: String,
        /// Byte offset of the `{{`.
        at: usize,
    },
    /// A placeholder this implementation does not know.
    #[error(
        "template error in {field} {input:?}: unknown placeholder {{{{{placeholder}}}}}; \
         known: {{{{.Service.ID}}}} {{{{.Service.Name}}}} {{{{.Service.Labels}}}} {{{{.Node.ID}}}} \
         {{{{.Node.Hostname}}}} {{{{.Node.Platform.OS}}}} {{{{.Node.Platform.Architecture}}}} \
         {{{{.Task.ID}}}} {{{{.Task.Name}}}} {{{{.Task.Slot}}}} and {{{{index .Service.Labels \"key\"}}}}"
    )]
    Unknown {
        /// Which field.
        field: String,
        /// The template.
        input: String,
        /// What was between the braces (trimmed).
        placeholder: String,
    },
}

/// Expands every placeholder of `input`. `field` names the field in error messages.
pub fn expand(input: &str, field: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
    if !input.contains("{{") {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len() + 16);
    let mut rest = input;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(TemplateError::Unclosed {
                field: field.to_string(),
                input: input.to_string(),
                at: offset + open,
            });
        };
        let expr = after[..close].trim();
        match lookup(expr, ctx) {
            Some(value) => out.push_str(&value),
            None => {
                return Err(TemplateError::Unknown {
                    field: field.to_string(),
                    input: input.to_string(),
                    placeholder: expr.to_string(),
                })
            }
        }
        let consumed = open + 2 + close + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(expr: &str, ctx: &TemplateContext) -> Option<String> {
    let v = match expr {
        ".Service.ID" => ctx.service_id.clone(),
        ".Service.Name" => ctx.service_name.clone(),
        ".Service.Labels" => go_map(&ctx.service_labels),
        ".Node.ID" => ctx.node_id.clone(),
        ".Node.Hostname" => ctx.node_hostname.clone(),
        ".Node.Platform.OS" => ctx.node_os.clone(),
        ".Node.Platform.Architecture" => ctx.node_arch.clone(),
        ".Task.ID" => ctx.task_id.clone(),
        ".Task.Name" => ctx.task_name.clone(),
        ".Task.Slot" => ctx.task_slot.clone(),
        _ => return index_label(expr, ctx),
    };
    Some(v)
}

/// `index .Service.Labels "key"`: the label's value, "" when missing (Go's zero value).
fn index_label(expr: &str, ctx: &TemplateContext) -> Option<String> {
    let rest = expr.strip_prefix("index")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start().strip_prefix(".Service.Labels")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let quoted = rest.trim();
    let key = quoted.strip_prefix('"')?.strip_suffix('"')?;
    if key.contains('"') || key.contains('\\') {
        return None;
    }
    Some(ctx.service_labels.get(key).cloned().unwrap_or_default())
}

fn go_map(m: &BTreeMap<String, String>) -> String {
    let mut s = String::from("map[");
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{k}:{v}");
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> TemplateContext {
        let mut labels = BTreeMap::new();
        labels.insert("tier".to_string(), "web".to_string());
        labels.insert("a".to_string(), "1".to_string());
        TemplateContext {
            service_id: "svc1".into(),
            service_name: "web".into(),
            service_labels: labels,
            node_id: "node1".into(),
            node_hostname: "host-a".into(),
            node_os: "linux".into(),
            node_arch: "x86_64".into(),
            task_id: "task1".into(),
            task_name: "web.3.task1".into(),
            task_slot: "3".into(),
        }
    }

    /// Cases as data: input, expected output or the error's text fragment.
    #[test]
    fn expansion_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("plain", Ok("plain")),
            ("", Ok("")),
            ("{{.Service.Name}}-{{.Task.Slot}}", Ok("web-3")),
            ("{{ .Node.Hostname }}", Ok("host-a")),
            (
                "{{.Service.ID}}{{.Node.ID}}{{.Task.ID}}",
                Ok("svc1node1task1"),
            ),
            (
                "{{.Node.Platform.OS}}/{{.Node.Platform.Architecture}}",
                Ok("linux/x86_64"),
            ),
            ("name={{.Task.Name}}", Ok("name=web.3.task1")),
            ("{{.Service.Labels}}", Ok("map[a:1 tier:web]")),
            ("{{index .Service.Labels \"tier\"}}", Ok("web")),
            ("{{index .Service.Labels \"missing\"}}", Ok("")),
            ("}} stray", Ok("}} stray")),
            ("héllo {{.Task.Slot}} wörld", Ok("héllo 3 wörld")),
            (
                "{{.Service.Bogus}}",
                Err("unknown placeholder {{.Service.Bogus}}"),
            ),
            ("x{{.Task.Slot", Err("at byte 1 is never closed")),
            ("{{}}", Err("unknown placeholder {{}}")),
            ("{{index .Service.Labels tier}}", Err("unknown placeholder")),
            ("{{indexfoo}}", Err("unknown placeholder")),
            ("{{{{.Task.Slot}}}}", Err("unknown placeholder")),
        ];
        for (input, want) in cases {
            let got = expand(input, "env", &ctx());
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(&g, w, "input {input:?}"),
                (Err(w), Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(w), "input {input:?}: {msg}");
                    assert!(msg.contains("env"), "{msg}");
                }
                (w, g) => panic!("input {input:?}: want {w:?}, got {g:?}"),
            }
        }
    }

    proptest::proptest! {
        /// Any input either expands or fails with an error; text without braces is unchanged.
        #[test]
        fn never_panics(input in "(\\PC|[{}.]){0,64}") {
            match expand(&input, "env", &ctx()) {
                Ok(out) if !input.contains("{{") => proptest::prop_assert_eq!(out, input),
                _ => {}
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let samples = [
            "{{",
            "}}{{",
            "{{ index",
            "{{index .Service.Labels \"",
            "\u{7f}{{é}}",
        ];
        for s in samples {
            let _ = expand(s, "hostname", &ctx());
        }
        // Every prefix of a valid template, byte by byte on char boundaries.
        let t = "a{{ index .Service.Labels \"tier\" }}é{{.Task.Name}}";
        for i in 0..=t.len() {
            if t.is_char_boundary(i) {
                let _ = expand(&t[..i], "hostname", &ctx());
            }
        }
    }
}
