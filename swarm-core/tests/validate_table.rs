//! Spec validation, one row per rule: a spec mutation and the error (and message) it must produce.

use std::time::Duration;

use swarm_core::objects::service::{
    FileTarget, GenericResource, HealthConfig, Mount, MountKind, PortConfig, SecretReference,
    TmpfsOptions, Ulimit,
};
use swarm_core::testing::{config, id, secret, service};
use swarm_core::validate::{
    service_mode, validate_cluster_spec, validate_config_spec, validate_network_bootstrap,
    validate_secret_spec, validate_service_spec, validate_service_update, ServiceLimits, SpecError,
    DEFAULT_MAX_REPLICAS,
};
use swarm_core::{ServiceMode, ServiceSpec};

fn base() -> ServiceSpec {
    service(1, "web", 3).spec
}

fn sref(name: &str, target: &str) -> SecretReference {
    SecretReference {
        secret_id: id(9),
        secret_name: name.into(),
        target: FileTarget {
            name: target.into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o444,
        },
    }
}

/// (case, mutation, Some(message substring) or None for valid)
type Case = (&'static str, fn(&mut ServiceSpec), Option<&'static str>);

#[test]
fn service_spec_rules() {
    let cases: Vec<Case> =
        vec![
        ("valid", |_| {}, None),
        (
            "empty name",
            |s| s.annotations.name.clear(),
            Some("service name must not be empty"),
        ),
        (
            "bad name",
            |s| s.annotations.name = "-web".into(),
            Some("invalid name \"-web\""),
        ),
        (
            "long name",
            |s| s.annotations.name = "a".repeat(64),
            Some("at most 63"),
        ),
        (
            "no image",
            |s| s.task.container.image.clear(),
            Some("image reference must be provided"),
        ),
        (
            "cpu too small",
            |s| s.task.resources.reservations.nano_cpus = 999_999,
            Some("invalid cpu value 0.000999999 in Resources.Reservations"),
        ),
        (
            "cpu negative",
            |s| s.task.resources.limits.nano_cpus = -1,
            Some("invalid cpu value"),
        ),
        (
            "cpu ok",
            |s| s.task.resources.reservations.nano_cpus = 1_000_000,
            None,
        ),
        (
            "memory too small",
            |s| s.task.resources.limits.memory_bytes = 4 * 1024 * 1024 - 1,
            Some("invalid memory value 4194303 in Resources.Limits: must be at least 4MiB"),
        ),
        (
            "memory ok",
            |s| s.task.resources.limits.memory_bytes = 4 * 1024 * 1024,
            None,
        ),
        (
            "bad constraint",
            |s| s.task.placement.constraints = vec!["node.labels.x = y".into()],
            Some("invalid placement constraint"),
        ),
        (
            "good constraint",
            |s| {
                s.task.placement.constraints =
                    vec!["node.labels.x==y".into(), "node.role!=manager".into()]
            },
            None,
        ),
        (
            // Docker stores any descriptor; every node falls in its "missing" branch.
            "any spread descriptor is stored",
            |s| s.task.placement.preferences = vec!["node.nolabel".into(), "node.id".into()],
            None,
        ),
        ("ratio 0.4 is exact", |s| s.update.max_failure_ratio = 0.4, None),
        (
            "ulimit without a name",
            |s| s.task.container.ulimits = vec![Ulimit::default()],
            Some("ContainerSpec: invalid Ulimits: a ulimit has no Name"),
        ),
        (
            "ulimit soft above hard",
            |s| {
                s.task.container.ulimits = vec![Ulimit {
                    name: "nofile".into(),
                    soft: 10,
                    hard: 5,
                }]
            },
            Some("nofile: soft limit 10 is above hard limit 5"),
        ),
        (
            "ulimit twice",
            |s| {
                let u = Ulimit {
                    name: "nproc".into(),
                    soft: 1,
                    hard: 2,
                };
                s.task.container.ulimits = vec![u.clone(), u]
            },
            Some("\"nproc\" is given twice"),
        ),
        (
            "capability with a space",
            |s| s.task.container.capability_add = vec!["CAP NET".into()],
            Some("ContainerSpec: invalid CapabilityAdd"),
        ),
        (
            "empty capability dropped",
            |s| s.task.container.capability_drop = vec![String::new()],
            Some("ContainerSpec: invalid CapabilityDrop"),
        ),
        (
            "sysctl with =",
            |s| {
                s.task.container.sysctls = [("a=b".to_string(), "1".to_string())].into();
            },
            Some("ContainerSpec: invalid Sysctls"),
        ),
        (
            "oom score out of range",
            |s| s.task.container.oom_score_adj = 1001,
            Some("OomScoreAdj: 1001 is out of range -1000..1000"),
        ),
        (
            "oom score at the edge",
            |s| s.task.container.oom_score_adj = -1000,
            None,
        ),
        (
            "negative pids limit",
            |s| s.task.resources.pids_limit = -1,
            Some("Resources.Limits.Pids"),
        ),
        (
            "generic resource without a kind",
            |s| {
                s.task.resources.generic_reservations = vec![GenericResource::Discrete {
                    kind: String::new(),
                    value: 1,
                }]
            },
            Some("a resource has no Kind"),
        ),
        (
            "negative discrete resource",
            |s| {
                s.task.resources.generic_reservations = vec![GenericResource::Discrete {
                    kind: "ssd".into(),
                    value: -1,
                }]
            },
            Some("resource \"ssd\" has an empty or negative Value"),
        ),
        (
            "named generic resource",
            |s| {
                s.task.resources.generic_reservations = vec![GenericResource::Named {
                    kind: "gpu".into(),
                    value: "gpu-0".into(),
                }]
            },
            None,
        ),
        (
            "good preference",
            |s| s.task.placement.preferences = vec!["node.labels.rack".into()],
            None,
        ),
        (
            "ratio above 1",
            |s| s.update.max_failure_ratio = 1.5,
            Some("UpdateConfig.MaxFailureRatio must be between 0 and 1"),
        ),
        (
            "ratio negative",
            |s| s.rollback.max_failure_ratio = -0.1,
            Some("RollbackConfig.MaxFailureRatio"),
        ),
        (
            "duplicate secret target",
            |s| s.task.container.secrets = vec![sref("a", "t"), sref("b", "t")],
            Some("secret references 'a' and 'b' have a conflicting target: 't'"),
        ),
        (
            "empty secret target",
            |s| s.task.container.secrets = vec![sref("a", "")],
            Some("target file name must not be empty"),
        ),
        (
            "max replicas on global",
            |s| {
                s.mode = ServiceMode::Global;
                s.task.placement.max_replicas = 2
            },
            Some("max replicas per node can only be used with replicated"),
        ),
        (
            "job with update config",
            |s| {
                s.mode = ServiceMode::GlobalJob;
                s.update.parallelism = 3
            },
            Some("jobs may not have an update config"),
        ),
        (
            "job without update config",
            |s| {
                s.mode = ServiceMode::ReplicatedJob {
                    max_concurrent: 2,
                    total_completions: 4,
                }
            },
            None,
        ),
        (
            "health interval below 1ms",
            |s| {
                s.task.container.healthcheck = Some(HealthConfig {
                    test: vec!["CMD".into(), "true".into()],
                    interval: Some(Duration::from_micros(10)),
                    ..Default::default()
                })
            },
            Some("Interval in Healthcheck cannot be less than 1ms"),
        ),
        (
            "health unknown test",
            |s| {
                s.task.container.healthcheck = Some(HealthConfig {
                    test: vec!["RUN".into()],
                    ..Default::default()
                })
            },
            Some("unknown test type"),
        ),
        (
            "health CMD without command",
            |s| {
                s.task.container.healthcheck = Some(HealthConfig {
                    test: vec!["CMD".into()],
                    ..Default::default()
                })
            },
            Some("test command must not be empty"),
        ),
        (
            "mount relative target",
            |s| {
                s.task.container.mounts = vec![Mount {
                    kind: MountKind::Volume,
                    source: "data".into(),
                    target: "data".into(),
                    ..Default::default()
                }]
            },
            Some(
                "invalid mount config for type \"volume\": field Target must be an absolute path \
                 (got \"data\")",
            ),
        ),
        (
            "bind without source",
            |s| {
                s.task.container.mounts = vec![Mount {
                    kind: MountKind::Bind,
                    target: "/x".into(),
                    ..Default::default()
                }]
            },
            Some("field Source must not be empty"),
        ),
        (
            "tmpfs with source",
            |s| {
                s.task.container.mounts = vec![Mount {
                    kind: MountKind::Tmpfs,
                    source: "/x".into(),
                    target: "/x".into(),
                    tmpfs: Some(TmpfsOptions::default()),
                    ..Default::default()
                }]
            },
            Some("field Source must not be specified"),
        ),
        (
            "port target zero",
            |s| {
                s.endpoint.ports = vec![PortConfig {
                    target_port: 0,
                    ..Default::default()
                }]
            },
            Some("target port 0 is out of range"),
        ),
        (
            "port published out of range",
            |s| {
                s.endpoint.ports = vec![PortConfig {
                    target_port: 80,
                    published_port: 70000,
                    ..Default::default()
                }]
            },
            Some("published port 70000 is out of range"),
        ),
        (
            "duplicate published port",
            |s| {
                s.endpoint.ports = vec![
                    PortConfig {
                        target_port: 80,
                        published_port: 8080,
                        ..Default::default()
                    },
                    PortConfig {
                        target_port: 81,
                        published_port: 8080,
                        ..Default::default()
                    },
                ]
            },
            Some("duplicate published port 8080/tcp"),
        ),
    ];
    for (name, mutate, want) in cases {
        let mut spec = base();
        mutate(&mut spec);
        let got = validate_service_spec(&spec, &ServiceLimits::default());
        match (want, got) {
            (None, Ok(())) => {}
            (Some(msg), Err(e)) => assert!(
                e.to_string().contains(msg),
                "case {name}: message {:?} lacks {msg:?}",
                e.to_string()
            ),
            (want, got) => panic!("case {name}: wanted {want:?}, got {got:?}"),
        }
    }
}

/// The replica cap applies to every count a mode asks for, at the default and at an operator's
/// own setting; global modes have no count to cap.
#[test]
fn task_counts_are_capped() {
    let job = |max_concurrent, total_completions| ServiceMode::ReplicatedJob {
        max_concurrent,
        total_completions,
    };
    let replicated = |replicas| ServiceMode::Replicated { replicas };
    let default = DEFAULT_MAX_REPLICAS;
    let cases: Vec<(ServiceMode, u64, Option<&str>)> = vec![
        (replicated(default), default, None),
        (replicated(0), default, None),
        (
            replicated(default + 1),
            default,
            Some("invalid Replicas value 100001: a service may ask for at most 100000 tasks (the manager's --max-replicas)"),
        ),
        (
            replicated(i64::MAX as u64),
            default,
            Some("invalid Replicas value 9223372036854775807: a service may ask for at most 100000 tasks"),
        ),
        (replicated(5), 5, None),
        (replicated(6), 5, Some("invalid Replicas value 6: a service may ask for at most 5 tasks")),
        (job(10, 10), 10, None),
        (job(11, 11), 10, Some("invalid MaxConcurrent value 11")),
        (job(1, 11), 10, Some("invalid TotalCompletions value 11")),
        (job(1, u64::MAX), default, Some("invalid TotalCompletions value 18446744073709551615")),
        (ServiceMode::Global, 0, None),
        (ServiceMode::GlobalJob, 0, None),
    ];
    for (mode, max_replicas, want) in cases {
        let mut spec = base();
        spec.mode = mode;
        if mode.is_job() {
            spec.update = Default::default();
            spec.rollback = Default::default();
        }
        let got = validate_service_spec(&spec, &ServiceLimits { max_replicas });
        match (want, got) {
            (None, Ok(())) => {}
            (Some(msg), Err(e @ SpecError::TooManyReplicas { .. })) => assert!(
                e.to_string().starts_with(msg),
                "{mode:?} cap {max_replicas}: message {:?} lacks {msg:?}",
                e.to_string()
            ),
            (want, got) => panic!("{mode:?} cap {max_replicas}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn update_rules() {
    let old = base();
    let mut renamed = base();
    renamed.annotations.name = "api".into();
    assert!(matches!(
        validate_service_update(&old, &renamed),
        Err(SpecError::Rename { .. })
    ));
    let mut global = base();
    global.mode = ServiceMode::Global;
    let e = validate_service_update(&old, &global).unwrap_err();
    assert_eq!(
        e.to_string(),
        "service mode change is not allowed (from replicated to global)"
    );
    let mut scaled = base();
    scaled.mode = ServiceMode::Replicated { replicas: 9 };
    assert_eq!(validate_service_update(&old, &scaled), Ok(()));
}

#[test]
fn mode_from_api_shape() {
    assert_eq!(
        service_mode(true, Some(3)),
        Err(SpecError::ReplicasOnGlobal)
    );
    assert_eq!(service_mode(true, None), Ok(ServiceMode::Global));
    assert_eq!(
        service_mode(false, None),
        Ok(ServiceMode::Replicated { replicas: 1 })
    );
    assert_eq!(
        service_mode(false, Some(0)),
        Ok(ServiceMode::Replicated { replicas: 0 })
    );
}

#[test]
fn secret_and_config_sizes() {
    let cases: Vec<(usize, bool)> = vec![
        (0, false),
        (1, true),
        (500 * 1024 - 1, true),
        (500 * 1024, false),
    ];
    for (size, ok) in cases {
        let s = secret(1, "pw", &vec![b'x'; size]);
        let r = validate_secret_spec(&s.spec);
        assert_eq!(r.is_ok(), ok, "secret of {size} bytes");
        if let Err(e) = r {
            assert!(e
                .to_string()
                .contains("secret data must be larger than 0 and less than 512000 bytes"));
        }
    }
    for (size, ok) in [
        (0usize, false),
        (1000 * 1024 - 1, true),
        (1000 * 1024, false),
    ] {
        let c = config(1, "site.conf", &vec![b'x'; size]);
        assert_eq!(
            validate_config_spec(&c.spec).is_ok(),
            ok,
            "config of {size} bytes"
        );
    }
    let bad = secret(1, "bad name!", b"x");
    assert!(matches!(
        validate_secret_spec(&bad.spec),
        Err(SpecError::InvalidName { .. })
    ));
    let long = secret(1, &"a".repeat(65), b"x");
    assert!(validate_secret_spec(&long.spec).is_err());
}

#[test]
fn cluster_rules() {
    let mut spec = swarm_core::objects::cluster::ClusterSpec::default();
    assert_eq!(validate_cluster_spec(&spec), Ok(()));
    spec.ca.node_cert_expiry = Duration::from_secs(1800);
    assert!(validate_cluster_spec(&spec)
        .unwrap_err()
        .to_string()
        .contains("minimum certificate expiry time is 1h"));
    spec.ca.node_cert_expiry = Duration::from_secs(3600);
    spec.ca.external_cas = vec![swarm_core::objects::cluster::ExternalCa {
        protocol: "acme".into(),
        url: "https://ca".into(),
        ..Default::default()
    }];
    assert!(validate_cluster_spec(&spec)
        .unwrap_err()
        .to_string()
        .contains("unknown protocol \"acme\""));
    spec.ca.external_cas[0].protocol = "cfssl".into();
    assert_eq!(validate_cluster_spec(&spec), Ok(()));
}

/// `swarm init`'s address pools, subnet size and data-path port, one row per rule.
#[test]
fn network_bootstrap_rules() {
    use swarm_core::objects::cluster::NetworkBootstrap;
    let nb = |pools: &[&str], subnet_size: u32, data_path_port: u32| NetworkBootstrap {
        default_addr_pool: pools.iter().map(|p| p.to_string()).collect(),
        subnet_size,
        data_path_port,
    };
    let cases: Vec<(NetworkBootstrap, Option<&str>)> = vec![
        (NetworkBootstrap::default(), None),
        (nb(&["10.231.0.0/16", "10.232.0.0/16"], 26, 4790), None),
        (nb(&["fd00::/48"], 64, 4789), None),
        (
            nb(&["10.0.0.0/8"], 24, 80),
            Some("DataPathPort: 80 is out of range"),
        ),
        (nb(&["10.0.0.0/8"], 24, 49152), Some("within 1024-49151")),
        (
            nb(&[], 24, 4789),
            Some("DefaultAddrPool: must not be empty"),
        ),
        (
            nb(&["10.0.0.0"], 24, 4789),
            Some("\"10.0.0.0\" is not a CIDR"),
        ),
        (nb(&["10.0.0.0/33"], 24, 4789), Some("is not a CIDR")),
        (nb(&["banana/8"], 24, 4789), Some("is not a CIDR")),
        (
            nb(&["10.1.0.0/16"], 8, 4789),
            Some("SubnetSize: 8 does not fit pool 10.1.0.0/16"),
        ),
        (nb(&["10.1.0.0/16"], 30, 4789), Some("and /29")),
    ];
    for (n, want) in cases {
        let got = validate_network_bootstrap(&n);
        match (want, got) {
            (None, Ok(())) => {}
            (Some(msg), Err(e)) => assert!(e.to_string().contains(msg), "{n:?}: {e}"),
            (want, got) => panic!("{n:?}: wanted {want:?}, got {got:?}"),
        }
    }
}
