//! A workspace as one Nomad job (HCL): a group per instance with one
//! `raw_exec` task, its port, restarts from the restart policy, a service
//! with a check from the health check (`check_restart` from its failure
//! threshold), and dependencies as prestart tasks that wait until the
//! dependency's service answers. Written as text: no dependency on
//! Nomad's code.

use std::fmt::Write;

use outpost::{
    spec::{Condition, HttpTarget, InstanceSpec, Probe, RestartMode},
    workspace_file::Workspace,
};

use super::{Exported, Unmapped, common_notes, label, ports, restart_word, seconds};

/// Nomad's name for an instance's port.
const PORT_LABEL: &str = "main";

/// The job of `workspace`.
pub fn export(workspace: &Workspace) -> Exported {
    let mut unmapped = Unmapped::default();
    let ports = ports(workspace, &mut unmapped);
    let mut groups = String::new();
    for spec in &workspace.instances {
        common_notes(spec, &mut unmapped);
        let name = label(spec, &spec.name, &mut unmapped);
        group(
            &mut groups,
            spec,
            &name,
            ports.get(&spec.name).copied(),
            workspace,
            &mut unmapped,
        );
    }
    let mut text = format!(
        "# Nomad job of workspace {} ({}), from outpostctl export.\n",
        workspace.name,
        workspace.file.display()
    );
    text.push_str(&unmapped.comments());
    let _ = write!(
        text,
        "job {} {{\n  datacenters = [\"*\"]\n  type        = \"service\"\n{groups}}}\n",
        quote(&workspace.name)
    );
    Exported {
        files: vec![(format!("{}.nomad.hcl", workspace.name), text)],
        unmapped: unmapped.0,
    }
}

fn group(
    out: &mut String,
    spec: &InstanceSpec,
    name: &str,
    port: Option<u16>,
    workspace: &Workspace,
    unmapped: &mut Unmapped,
) {
    let _ = writeln!(out, "\n  group {} {{", quote(name));
    if let Some(port) = port {
        let _ = writeln!(
            out,
            "    network {{\n      port \"{PORT_LABEL}\" {{\n        static = {port}\n      }}\n    }}"
        );
    }
    restart(out, spec, unmapped);
    task(out, spec, name, port, unmapped);
    for (dependency, condition) in &spec.depends_on {
        wait_task(out, spec, dependency, *condition, workspace, unmapped);
    }
    out.push_str("  }\n");
}

fn restart(out: &mut String, spec: &InstanceSpec, unmapped: &mut Unmapped) {
    let policy = &spec.restart;
    if policy.mode == RestartMode::Never {
        out.push_str("    restart {\n      attempts = 0\n      mode     = \"fail\"\n    }\n");
        return;
    }
    if policy.mode == RestartMode::OnFailure {
        unmapped.note(
            spec,
            format!(
                "restart = \"{}\": Nomad restarts a service task after any exit",
                restart_word(policy.mode)
            ),
        );
    }
    if policy.max_delay != policy.initial_delay {
        unmapped.note(
            spec,
            "the restart delay's doubling: Nomad waits the same delay before each restart",
        );
    }
    let _ = writeln!(
        out,
        "    restart {{\n      attempts = {}\n      delay    = \"{}s\"\n      interval = \"{}s\"\n      mode     = \"delay\"\n    }}",
        policy.max_restarts,
        seconds(policy.initial_delay, 1),
        seconds(policy.reset_after.max(policy.cooldown), 1),
    );
}

fn task(
    out: &mut String,
    spec: &InstanceSpec,
    name: &str,
    port: Option<u16>,
    unmapped: &mut Unmapped,
) {
    let _ = writeln!(
        out,
        "    task {} {{\n      driver = \"raw_exec\"",
        quote(name)
    );
    let args: Vec<String> = spec.args.iter().map(|arg| with_nomad_port(arg)).collect();
    let _ = writeln!(
        out,
        "      config {{\n        command = {}\n        args    = [{}]\n      }}",
        with_nomad_port(&spec.command),
        args.join(", ")
    );
    if let Some(dir) = spec.working_dir.as_ref().or(spec.project_path.as_ref()) {
        unmapped.note(
            spec,
            format!(
                "working directory {}: raw_exec tasks start in their task directory",
                dir.display()
            ),
        );
    }
    if !spec.env.is_empty() || port.is_some() {
        out.push_str("      env {\n");
        for (key, value) in &spec.env {
            if identifier(key) {
                let _ = writeln!(out, "        {key} = {}", with_nomad_port(value));
            } else {
                unmapped.note(
                    spec,
                    format!("env {key}: not a name HCL can write in an env block"),
                );
            }
        }
        if port.is_some() {
            let _ = writeln!(out, "        PORT = \"${{NOMAD_PORT_{PORT_LABEL}}}\"");
        }
        out.push_str("      }\n");
    }
    let _ = writeln!(
        out,
        "      kill_signal  = {}\n      kill_timeout = \"{}s\"",
        quote(spec.stop_signal.as_str()),
        seconds(spec.stop_grace, 0)
    );
    if let Some(bytes) = spec.limits.memory_max {
        let _ = writeln!(
            out,
            "      resources {{\n        memory = {}\n      }}",
            bytes.div_ceil(1 << 20)
        );
    }
    if spec.limits.cpu_max_percent.is_some() {
        unmapped.note(
            spec,
            "cpu_max: Nomad reserves CPU in MHz, not a share of a core",
        );
    }
    if spec.readiness.notify {
        unmapped.note(spec, "ready_notify: sd_notify has no Nomad equivalent");
    }
    if port.is_some() {
        service(out, spec, name, unmapped);
    } else if spec.health.probe != Probe::None {
        unmapped.note(
            spec,
            "its health check: a Nomad check needs a service, and so a port",
        );
    }
    out.push_str("    }\n");
}

fn service(out: &mut String, spec: &InstanceSpec, name: &str, unmapped: &mut Unmapped) {
    let _ = writeln!(
        out,
        "      service {{\n        name     = {}\n        port     = \"{PORT_LABEL}\"\n        provider = \"nomad\"",
        quote(name)
    );
    let health = &spec.health;
    let kind = match &health.probe {
        Probe::Tcp { .. } => Some("type     = \"tcp\"".to_owned()),
        Probe::Http {
            target: HttpTarget::Path(path),
        } => Some(format!(
            "type     = \"http\"\n          path     = {}",
            quote(path)
        )),
        Probe::Http {
            target: HttpTarget::Url(url),
        } => {
            unmapped.note(
                spec,
                format!("the http check of {url}: a Nomad check probes its service"),
            );
            None
        }
        Probe::Exec { .. } => {
            unmapped.note(
                spec,
                "its exec check: Nomad's own services check by http or tcp only",
            );
            None
        }
        Probe::None => None,
    };
    if let Some(kind) = kind {
        let _ = writeln!(
            out,
            "        check {{\n          {kind}\n          interval = \"{}s\"\n          timeout  = \"{}s\"",
            seconds(health.interval, 1),
            seconds(health.timeout, 1)
        );
        if spec.restart.mode != RestartMode::Never {
            let _ = writeln!(
                out,
                "          check_restart {{\n            limit = {}\n            grace = \"{}s\"\n          }}",
                health.failure_threshold,
                seconds(spec.startup_timeout, 1)
            );
        }
        out.push_str("        }\n");
    }
    out.push_str("      }\n");
}

/// A prestart task that waits until `dependency`'s service answers.
fn wait_task(
    out: &mut String,
    spec: &InstanceSpec,
    dependency: &str,
    condition: Condition,
    workspace: &Workspace,
    unmapped: &mut Unmapped,
) {
    let ported = (workspace.instances.iter())
        .any(|other| other.name == dependency && other.port != outpost::spec::PortChoice::None);
    if condition == Condition::Completed || !ported {
        unmapped.note(
            spec,
            format!(
                "depends_on {dependency} = \"{}\": a Nomad task can wait only for a service \
                 that answers on its port",
                condition.as_str()
            ),
        );
        return;
    }
    let service = label(spec, dependency, unmapped);
    let lookup = format!(
        "{{{{ range nomadService \"{service}\" }}}}DEPENDENCY={{{{ .Address }}}} {{{{ .Port }}}}{{{{ end }}}}\n"
    );
    let _ = writeln!(
        out,
        "    task {} {{\n      driver = \"raw_exec\"\n      lifecycle {{\n        hook    = \"prestart\"\n        sidecar = false\n      }}\n      template {{\n        data        = {}\n        destination = \"local/dependency.env\"\n        env         = true\n      }}\n      config {{\n        command = \"sh\"\n        args    = [\"-c\", {}]\n      }}\n    }}",
        quote(&format!("wait-{service}")),
        quote(&lookup),
        quote("until [ -n \"$DEPENDENCY\" ] && nc -z $DEPENDENCY; do sleep 1; done"),
    );
}

/// Whether `key` can stand as an HCL attribute name.
fn identifier(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// An HCL string literal: escapes, and `${`/`%{` kept literal.
fn quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                quoted.push(c);
                quoted.push(c);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// `text` as an HCL string with `{port}` as Nomad's port of the task.
fn with_nomad_port(text: &str) -> String {
    let pieces: Vec<String> = text
        .split("{port}")
        .map(|piece| {
            let quoted = quote(piece);
            quoted[1..quoted.len() - 1].to_owned()
        })
        .collect();
    format!(
        "\"{}\"",
        pieces.join(&format!("${{NOMAD_PORT_{PORT_LABEL}}}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_keep_their_text_literal() {
        assert_eq!(
            quote(r#"a "b" \ ${x} %{y} $z"#),
            r#""a \"b\" \\ $${x} %%{y} $z""#
        );
        assert_eq!(
            with_nomad_port("--port={port}"),
            "\"--port=${NOMAD_PORT_main}\""
        );
    }
}
