//! A workspace as Kubernetes objects: a Deployment per long-running
//! instance (a Job for a one-shot task others need completed), a Service
//! per instance with a port, probes from the health check and the startup
//! timeout, resource limits, and dependencies as init containers that
//! wait for them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use outpost::{
    spec::{Condition, HttpTarget, InstanceSpec, Probe, RestartMode},
    workspace_file::Workspace,
};

use super::{
    Exported, Unmapped, command_line, common_notes, label, one_shots, ports, restart_word, seconds,
    with_port, yaml,
};

/// The image the init containers that wait for a dependency run in.
const WAIT_IMAGE: &str = "busybox:1.36";

/// The manifests of `workspace`, with commands running in `image`.
pub fn export(workspace: &Workspace, image: &str) -> Exported {
    let mut unmapped = Unmapped::default();
    let ports = ports(workspace, &mut unmapped);
    let one_shots = one_shots(workspace);
    let mut documents = Vec::new();
    for spec in &workspace.instances {
        common_notes(spec, &mut unmapped);
        let name = label(spec, &spec.name, &mut unmapped);
        let port = ports.get(&spec.name).copied();
        let pod = pod(spec, &name, image, port, &ports, workspace, &mut unmapped);
        let one_shot = one_shots.contains(&spec.name.as_str());
        documents.push(if one_shot {
            job(spec, &name, pod)
        } else {
            deployment(spec, &name, pod, &mut unmapped)
        });
        if let Some(port) = port {
            documents.push(service(&name, port));
        }
    }
    let mut text = format!(
        "# Kubernetes objects of workspace {} ({}), from outpostctl export.\n\
         # The commands run in the image {image}: it must hold each project.\n",
        workspace.name,
        workspace.file.display()
    );
    text.push_str(&unmapped.comments());
    for document in &documents {
        text.push_str("---\n");
        text.push_str(&yaml::document(document));
    }
    Exported {
        files: vec![(format!("{}.yaml", workspace.name), text)],
        unmapped: unmapped.0,
    }
}

fn labels(name: &str) -> Value {
    json!({ "app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "outpostctl-export" })
}

fn deployment(spec: &InstanceSpec, name: &str, pod: Value, unmapped: &mut Unmapped) -> Value {
    if spec.restart.mode != RestartMode::Always {
        unmapped.note(
            spec,
            format!(
                "restart = \"{}\": a Deployment always restarts its containers",
                restart_word(spec.restart.mode)
            ),
        );
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "labels": labels(name), "name": name },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app.kubernetes.io/name": name } },
            "template": { "metadata": { "labels": labels(name) }, "spec": pod }
        }
    })
}

fn job(spec: &InstanceSpec, name: &str, mut pod: Value) -> Value {
    let retry = spec.restart.mode != RestartMode::Never;
    pod["restartPolicy"] = json!(if retry { "OnFailure" } else { "Never" });
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "labels": labels(name), "name": name },
        "spec": {
            "backoffLimit": if retry { spec.restart.max_restarts } else { 0 },
            "template": { "metadata": { "labels": labels(name) }, "spec": pod }
        }
    })
}

fn service(name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "labels": labels(name), "name": name },
        "spec": {
            "ports": [{ "name": "main", "port": port, "targetPort": port }],
            "selector": { "app.kubernetes.io/name": name }
        }
    })
}

fn pod(
    spec: &InstanceSpec,
    name: &str,
    image: &str,
    port: Option<u16>,
    ports: &BTreeMap<String, u16>,
    workspace: &Workspace,
    unmapped: &mut Unmapped,
) -> Value {
    let port_text = port.map(|p| p.to_string());
    let mut env: Vec<Value> = (spec.env.iter())
        .map(|(key, value)| json!({ "name": key, "value": with_port(value, port_text.clone()) }))
        .collect();
    if let Some(port) = port {
        env.push(json!({ "name": "PORT", "value": port.to_string() }));
    }
    let mut container = json!({
        "command": command_line(spec, port_text),
        "env": env,
        "image": image,
        "name": name,
    });
    if let Some(dir) = spec.working_dir.as_ref().or(spec.project_path.as_ref()) {
        container["workingDir"] = json!(dir.display().to_string());
    }
    if let Some(port) = port {
        container["ports"] = json!([{ "containerPort": port, "name": "main" }]);
    }
    let mut limits = serde_json::Map::new();
    if let Some(bytes) = spec.limits.memory_max {
        limits.insert("memory".to_owned(), json!(bytes.to_string()));
    }
    if let Some(percent) = spec.limits.cpu_max_percent {
        limits.insert(
            "cpu".to_owned(),
            json!(format!("{}m", u64::from(percent) * 10)),
        );
    }
    if !limits.is_empty() {
        container["resources"] = json!({ "limits": limits });
    }
    if let Some(probe) = probe(spec, port, unmapped) {
        let health = &spec.health;
        let period = seconds(health.interval, 1);
        let mut readiness = probe.clone();
        readiness["periodSeconds"] = json!(period);
        readiness["timeoutSeconds"] = json!(seconds(health.timeout, 1));
        readiness["failureThreshold"] = json!(health.failure_threshold);
        readiness["successThreshold"] = json!(health.success_threshold);
        let mut startup = probe.clone();
        startup["periodSeconds"] = json!(period);
        startup["failureThreshold"] = json!(seconds(spec.startup_timeout, 1).div_ceil(period));
        container["readinessProbe"] = readiness.clone();
        container["startupProbe"] = startup;
        if spec.restart.mode != RestartMode::Never {
            readiness["successThreshold"] = json!(1);
            container["livenessProbe"] = readiness;
        }
    }
    if spec.readiness.notify {
        unmapped.note(spec, "ready_notify: sd_notify has no Kubernetes equivalent");
    }
    if spec.stop_signal.as_str() != "SIGTERM" {
        unmapped.note(
            spec,
            format!(
                "stop_signal {}: Kubernetes sends SIGTERM",
                spec.stop_signal.as_str()
            ),
        );
    }
    if !spec.labels.is_empty() {
        unmapped.note(spec, "labels: outpost's labels are not Kubernetes labels");
    }
    let waits = waits(spec, ports, workspace, unmapped);
    let mut pod = json!({
        "containers": [container],
        "terminationGracePeriodSeconds": seconds(spec.stop_grace, 0),
    });
    if !waits.is_empty() {
        pod["initContainers"] = json!(waits);
    }
    pod
}

/// The probe of the health check, without its timing.
fn probe(spec: &InstanceSpec, port: Option<u16>, unmapped: &mut Unmapped) -> Option<Value> {
    match &spec.health.probe {
        Probe::None => None,
        Probe::Tcp { host, port: given } => {
            if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1") {
                unmapped.note(
                    spec,
                    format!("the tcp check of host {host}: probes reach the pod"),
                );
            }
            Some(json!({ "tcpSocket": { "port": given.or(port)? } }))
        }
        Probe::Http {
            target: HttpTarget::Path(path),
        } => Some(json!({ "httpGet": { "path": path, "port": port? } })),
        Probe::Http {
            target: HttpTarget::Url(url),
        } => {
            unmapped.note(
                spec,
                format!("the http check of {url}: probes reach the pod's own port"),
            );
            None
        }
        Probe::Exec { command } => Some(json!({ "exec": { "command": command } })),
    }
}

/// Init containers that wait until each dependency answers on its port.
fn waits(
    spec: &InstanceSpec,
    ports: &BTreeMap<String, u16>,
    workspace: &Workspace,
    unmapped: &mut Unmapped,
) -> Vec<Value> {
    let mut waits = Vec::new();
    for (dependency, condition) in &spec.depends_on {
        let service = label(spec, dependency, unmapped);
        if *condition == Condition::Completed {
            unmapped.note(
                spec,
                format!(
                    "depends_on {dependency} = \"completed\": it is a Job; wait for it with \
                     `kubectl wait --for=condition=complete job/{service}` before applying this"
                ),
            );
            continue;
        }
        let in_workspace = workspace.instances.iter().any(|s| &s.name == dependency);
        match ports.get(dependency) {
            Some(port) if in_workspace => waits.push(json!({
                "command": [
                    "sh",
                    "-c",
                    format!("until nc -z {service} {port}; do sleep 1; done")
                ],
                "image": WAIT_IMAGE,
                "name": format!("wait-{}", &service[..service.len().min(58)]),
            })),
            _ => unmapped.note(
                spec,
                format!(
                    "depends_on {dependency}: it has no port in this workspace, so nothing in \
                     another pod can tell it is {}",
                    condition.as_str()
                ),
            ),
        }
    }
    waits
}
