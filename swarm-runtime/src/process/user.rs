//! Resolving a spec's `user` (`uid`, `uid:gid`, `name`, `name:group`) and `groups` against the
//! host's /etc/passwd and /etc/group, as Docker resolves them against the image's.

use crate::error::RuntimeError;

/// A resolved user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: String,
    pub(crate) groups: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3).then_some(())?;
            Some((f[0].to_string(), f[2].parse().ok()?))
        })
        .collect()
}

/// Resolves `user` and `extra_groups` using the given passwd and group file contents.
pub(crate) fn resolve_with(
    user: &str,
    extra_groups: &[String],
    passwd_text: &str,
    group_text: &str,
) -> Result<ResolvedUser, RuntimeError> {
    let users = passwd(passwd_text);
    let grps = groups(group_text);
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, mut gid, home) = if u.is_empty() {
        (0, 0, "/root".to_string())
    } else if let Ok(n) = u.parse::<u32>() {
        match users.iter().find(|e| e.uid == n) {
            Some(e) => (n, e.gid, e.home.clone()),
            None => (n, 0, "/".to_string()),
        }
    } else {
        let e = users.iter().find(|e| e.name == u).ok_or_else(|| {
            RuntimeError::invalid(format!(
                "unable to find user {u}: no matching entries in passwd file"
            ))
        })?;
        (e.uid, e.gid, e.home.clone())
    };
    let group_id = |name: &str| -> Result<u32, RuntimeError> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        grps.iter()
            .find(|(n, _)| n == name)
            .map(|&(_, id)| id)
            .ok_or_else(|| {
                RuntimeError::invalid(format!(
                    "unable to find group {name}: no matching entries in group file"
                ))
            })
    };
    if let Some(g) = g {
        gid = group_id(g)?;
    }
    let groups = extra_groups
        .iter()
        .map(|g| group_id(g))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ResolvedUser {
        uid,
        gid,
        home,
        groups,
    })
}

/// Resolves against the host's files.
pub(crate) fn resolve(user: &str, extra_groups: &[String]) -> Result<ResolvedUser, RuntimeError> {
    let p = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let g = std::fs::read_to_string("/etc/group").unwrap_or_default();
    resolve_with(user, extra_groups, &p, &g)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\napp:x:1000:1001::/home/app:/bin/sh\nbroken line\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nstaff:x:50:app\n";

    #[test]
    fn user_specs() {
        let r = |u: &str| resolve_with(u, &[], PASSWD, GROUP);
        assert_eq!(r("").unwrap().uid, 0);
        let app = r("app").unwrap();
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1001, "/home/app")
        );
        assert_eq!(r("1000").unwrap().gid, 1001);
        assert_eq!(r("4242").unwrap().gid, 0);
        assert_eq!(r("nobody:staff").unwrap().gid, 50);
        assert_eq!(r("5:7").unwrap().gid, 7);
        assert!(r("ghost")
            .unwrap_err()
            .to_string()
            .contains("unable to find user ghost"));
        assert!(r("app:ghosts").unwrap_err().is_rejection());
        let g = resolve_with("app", &["staff".into(), "12".into()], PASSWD, GROUP).unwrap();
        assert_eq!(g.groups, vec![50, 12]);
    }
}
