//! A workspace as systemd service units, one per instance: the command
//! (its program found on this machine's PATH), environment, working
//! directory, restarts, stop signal and grace, the startup deadline,
//! sd_notify readiness and watchdog, memory and CPU limits, and
//! dependencies as `Requires=` + `After=` (a one-shot task others need
//! completed is `Type=oneshot`, so `After=` waits for its exit).

use std::{fmt::Write, path::Path};

use outpost::{
    spec::{InstanceSpec, Probe, RestartMode},
    workspace_file::Workspace,
};

use super::{Exported, Unmapped, command_line, common_notes, one_shots, ports, seconds, with_port};

/// One unit per instance of `workspace`.
pub fn export(workspace: &Workspace) -> Exported {
    let mut unmapped = Unmapped::default();
    let ports = ports(workspace, &mut unmapped);
    let one_shots = one_shots(workspace);
    let mut units = Vec::new();
    for spec in &workspace.instances {
        common_notes(spec, &mut unmapped);
        let port = ports.get(&spec.name).copied();
        let one_shot = one_shots.contains(&spec.name.as_str());
        let body = unit(spec, port, one_shot, workspace, &mut unmapped);
        units.push((spec.name.clone(), unit_name(&spec.name), body));
    }
    let files = units
        .into_iter()
        .map(|(instance, name, body)| {
            // Each unit lists what it lost itself.
            let own = format!("{instance}: ");
            let notes: String = (unmapped.0.iter())
                .filter(|note| note.starts_with(&own))
                .map(|note| format!("# not mapped: {note}\n"))
                .collect();
            let text = format!(
                "# {name}: instance {instance} of workspace {} ({}), from outpostctl export.\n\
                 {notes}{body}\n",
                workspace.name,
                workspace.file.display(),
            );
            (name, text)
        })
        .collect();
    Exported {
        files,
        unmapped: unmapped.0,
    }
}

/// `shop.web` → `shop.web.service` (names are valid unit names as they are).
fn unit_name(name: &str) -> String {
    format!("{name}.service")
}

fn unit(
    spec: &InstanceSpec,
    port: Option<u16>,
    one_shot: bool,
    workspace: &Workspace,
    unmapped: &mut Unmapped,
) -> String {
    let mut text = format!("[Unit]\nDescription=outpost instance {}\n", spec.name);
    for dependency in spec.depends_on.keys() {
        if !workspace.instances.iter().any(|s| &s.name == dependency) {
            unmapped.note(
                spec,
                format!("depends_on {dependency}: not in this workspace"),
            );
        }
        let name = unit_name(dependency);
        let _ = writeln!(text, "Requires={name}\nAfter={name}");
    }
    let policy = &spec.restart;
    if policy.mode != RestartMode::Never {
        let _ = writeln!(
            text,
            "StartLimitIntervalSec={}\nStartLimitBurst={}",
            seconds(policy.reset_after, 1),
            policy.max_restarts + 1
        );
    }
    let kind = if one_shot {
        "oneshot"
    } else if spec.readiness.notify {
        "notify"
    } else {
        "exec"
    };
    let _ = writeln!(text, "\n[Service]\nType={kind}");
    if one_shot {
        text.push_str("RemainAfterExit=yes\n");
    }
    let port_text = port.map(|p| p.to_string());
    let mut line = command_line(spec, port_text.clone());
    line[0] = program(&line[0], spec, unmapped);
    let words: Vec<String> = line.iter().map(|word| quote(word, true)).collect();
    let _ = writeln!(text, "ExecStart={}", words.join(" "));
    if let Some(dir) = spec.working_dir.as_ref().or(spec.project_path.as_ref()) {
        let _ = writeln!(
            text,
            "WorkingDirectory={}",
            escape(&dir.display().to_string())
        );
    }
    for (key, value) in &spec.env {
        let assignment = format!("{key}={}", with_port(value, port_text.clone()));
        let _ = writeln!(text, "Environment={}", quote(&assignment, false));
    }
    if let Some(port) = port {
        let _ = writeln!(text, "Environment=PORT={port}");
    }
    let restart = match policy.mode {
        RestartMode::Never => "no",
        RestartMode::OnFailure => "on-failure",
        // A oneshot unit may not restart after a clean exit.
        RestartMode::Always if one_shot => "on-failure",
        RestartMode::Always => "always",
    };
    let _ = writeln!(text, "Restart={restart}");
    if policy.mode != RestartMode::Never {
        let _ = writeln!(text, "RestartSec={}", seconds(policy.initial_delay, 1));
        if policy.max_delay != policy.initial_delay {
            // RestartSteps= is newer than the systemd of many machines.
            unmapped.note(
                spec,
                "the restart delay's doubling: the unit waits RestartSec before each restart",
            );
        }
    }
    let _ = writeln!(
        text,
        "KillMode=control-group\nKillSignal={}\nTimeoutStopSec={}\nTimeoutStartSec={}",
        spec.stop_signal.as_str(),
        seconds(spec.stop_grace, 1),
        seconds(spec.startup_timeout, 1)
    );
    if let Some(every) = spec.readiness.watchdog {
        let _ = writeln!(text, "WatchdogSec={}ms", every.as_millis());
    }
    if let Some(bytes) = spec.limits.memory_max {
        let _ = writeln!(text, "MemoryMax={bytes}");
    }
    if let Some(percent) = spec.limits.cpu_max_percent {
        let _ = writeln!(text, "CPUQuota={percent}%");
    }
    if spec.health.probe != Probe::None {
        unmapped.note(spec, "its health check: systemd does not probe services");
    }
    text.push_str("\n[Install]\nWantedBy=default.target");
    text
}

/// The program as an absolute path: systemd looks names up in its own
/// short list of directories, so the PATH of this machine decides now.
fn program(command: &str, spec: &InstanceSpec, unmapped: &mut Unmapped) -> String {
    if Path::new(command).is_absolute() {
        return command.to_owned();
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(command))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => path.display().to_string(),
        None => {
            unmapped.note(
                spec,
                format!("the program {command} is not on this PATH: give its absolute path"),
            );
            command.to_owned()
        }
    }
}

/// One word of a command line (`command`: `$` kept literal too) or an
/// assignment, double-quoted as systemd reads it, `%` kept literal.
fn quote(word: &str, command: bool) -> String {
    let mut quoted = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '%' => quoted.push_str("%%"),
            '$' if command => quoted.push_str("$$"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A value that takes no quotes (a path), with `%` kept literal.
fn escape(text: &str) -> String {
    text.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_as_systemd_reads_them() {
        assert_eq!(
            quote(r#"say "hi" 100% $HOME \ end"#, true),
            r#""say \"hi\" 100%% $$HOME \\ end""#
        );
        assert_eq!(quote("A=$B", false), r#""A=$B""#);
        assert_eq!(unit_name("shop.web"), "shop.web.service");
    }
}
