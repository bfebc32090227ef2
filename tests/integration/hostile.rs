//! Hostile input over every RPC, generated from the contract itself: the
//! descriptors name every request and every field, and each field (and
//! each field of its messages, a few levels down) is sent alone with values
//! a careless or malicious client might send — huge, negative, empty, NUL,
//! not UTF-8, unknown enum numbers, path tricks, truncated messages. The
//! requests go as raw bytes, so even values the generated types cannot
//! hold reach the daemon.
//!
//! Every call must end within a deadline with a status that says the
//! caller was wrong (or that the request was fine): never INTERNAL or
//! UNKNOWN, never a dropped connection, and never an error that echoes
//! a huge input back. Afterwards the daemon still serves and answers
//! health, and nothing was written outside its directories.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::{Buf, BufMut};
use outpost::{
    endpoint::Connection,
    proto::{FILE_DESCRIPTOR_SET, v1 as pb},
};
use prost::Message;
use prost_types::{
    DescriptorProto, FileDescriptorSet, MethodDescriptorProto,
    field_descriptor_proto::{Label, Type},
};
use tonic::{
    Code, Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

use crate::harness::{Daemon, assert_no_stray_processes, create, spec};

/// How long one call may take before the daemon counts as hung.
const CALL_DEADLINE: Duration = Duration::from_secs(20);
/// Longest error message accepted: inputs are echoed cut short.
const MAX_MESSAGE: usize = 1024;
/// How deep into nested messages single fields are made hostile.
const DEPTH: usize = 3;
/// Where a path trick would land if a name were not confined.
const ESCAPE: &str = "outpost-hostile-escape";

/// Requests and responses as raw bytes.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// One field's value on the wire.
#[derive(Clone, Debug)]
enum Value {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(Vec<u8>),
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Field `number` holding `value`, as protobuf encodes it.
fn field(number: i32, value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let wire = match value {
        Value::Varint(_) => 0,
        Value::Fixed64(_) => 1,
        Value::Bytes(_) => 2,
        Value::Fixed32(_) => 5,
    };
    put_varint(&mut out, (u64::from(number as u32) << 3) | wire);
    match value {
        Value::Varint(v) => put_varint(&mut out, *v),
        Value::Fixed64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Fixed32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bytes(bytes) => {
            put_varint(&mut out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
    }
    out
}

/// Text a client should never get away with (as a string or bytes field).
fn hostile_texts() -> Vec<Vec<u8>> {
    let escape = format!("../../../../../../../../tmp/{ESCAPE}");
    vec![
        Vec::new(),
        b"\0".to_vec(),
        b"name\0with-nul".to_vec(),
        vec![b'x'; 300 << 10],
        vec![0xff, 0xfe, 0x80, 0x00],
        b"..".to_vec(),
        b"../outside/x".to_vec(),
        escape.clone().into_bytes(),
        format!("/tmp/{ESCAPE}-absolute").into_bytes(),
        format!("{escape}/../{ESCAPE}-dotdot").into_bytes(),
        b"%2e%2e%2f%2e%2e%2fetc".to_vec(),
        b"line\nbreak".to_vec(),
        " ".repeat(70).into_bytes(),
        "\u{202e}\u{feff}名前🙂".as_bytes().to_vec(),
    ]
}

/// The hostile values for a field of `kind` (messages excepted: their
/// fields are made hostile one by one, and they get broken bytes).
fn hostile_values(kind: Type) -> Vec<Value> {
    let numbers = [
        0,
        1,
        u64::from(u32::MAX),
        i64::MAX as u64,
        u64::MAX,
        i64::MIN as u64,
        1 << 31,
        1 << 40,
    ];
    match kind {
        Type::String | Type::Bytes => hostile_texts().into_iter().map(Value::Bytes).collect(),
        Type::Bool => [0, 1, 2, u64::MAX].map(Value::Varint).to_vec(),
        Type::Enum => [9999, u64::MAX, 1 << 31, i64::MIN as u64]
            .map(Value::Varint)
            .to_vec(),
        Type::Double | Type::Fixed64 | Type::Sfixed64 => [
            f64::NAN.to_bits(),
            f64::INFINITY.to_bits(),
            (-1e308f64).to_bits(),
            u64::MAX,
        ]
        .map(Value::Fixed64)
        .to_vec(),
        Type::Float | Type::Fixed32 | Type::Sfixed32 => {
            [f32::NAN.to_bits(), f32::INFINITY.to_bits(), u32::MAX]
                .map(Value::Fixed32)
                .to_vec()
        }
        Type::Message | Type::Group => vec![
            Value::Bytes(Vec::new()),
            Value::Bytes(vec![0xff; 12]),
            // A length that runs past the end of the message.
            Value::Bytes(vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]),
        ],
        _ => numbers.map(Value::Varint).to_vec(),
    }
}

/// Every message of the contract (and its imports), by full name.
struct Messages(std::collections::HashMap<String, DescriptorProto>);

impl Messages {
    fn get(&self, name: &str) -> &DescriptorProto {
        self.0
            .get(name.trim_start_matches('.'))
            .unwrap_or_else(|| panic!("no message {name}"))
    }

    /// Requests with one hostile field each, for `message`, `depth`
    /// levels into nested messages: (what, encoded request).
    fn hostile_requests(&self, message: &DescriptorProto, depth: usize) -> Vec<(String, Vec<u8>)> {
        let mut requests = Vec::new();
        for f in &message.field {
            let kind = f.r#type();
            let name = f.name();
            for value in hostile_values(kind) {
                requests.push((
                    format!("{name}={}", describe(&value)),
                    field(f.number(), &value),
                ));
            }
            if f.label() == Label::Repeated && kind == Type::String {
                let many: Vec<u8> = (0..100_000)
                    .flat_map(|_| field(f.number(), &Value::Bytes(b"a".to_vec())))
                    .collect();
                requests.push((format!("{name}=[\"a\"; 100000]"), many));
            }
            if kind == Type::Message && depth > 0 {
                let nested = self.get(f.type_name());
                for (what, inner) in self.hostile_requests(nested, depth - 1) {
                    requests.push((
                        format!("{name}.{what}"),
                        field(f.number(), &Value::Bytes(inner)),
                    ));
                }
            }
        }
        requests
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Bytes(bytes) if bytes.len() > 40 => format!("<{} bytes>", bytes.len()),
        Value::Bytes(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
        other => format!("{other:?}"),
    }
}

/// The contract's services and messages.
fn contract() -> (Vec<(String, MethodDescriptorProto)>, Messages) {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let mut messages = std::collections::HashMap::new();
    let mut methods = Vec::new();
    for file in &set.file {
        let package = file.package();
        for message in &file.message_type {
            add_messages(&mut messages, package, message);
        }
        for service in &file.service {
            for method in &service.method {
                methods.push((
                    format!("/{package}.{}/{}", service.name(), method.name()),
                    method.clone(),
                ));
            }
        }
    }
    (methods, Messages(messages))
}

fn add_messages(
    messages: &mut std::collections::HashMap<String, DescriptorProto>,
    scope: &str,
    message: &DescriptorProto,
) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        add_messages(messages, &name, nested);
    }
    messages.insert(name, message.clone());
}

/// Sends `request` to `path` and returns the status it ended with (OK for
/// a reply or a stream's first message).
async fn call(connection: &Connection, path: &str, streaming: bool, request: Vec<u8>) -> Status {
    let mut grpc = tonic::client::Grpc::new(connection.intercepted())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    grpc.ready().await.expect("the daemon takes calls");
    let path = path.parse().unwrap();
    let request = tonic::Request::new(request);
    if streaming {
        // An open stream that has nothing to say yet is an answer too.
        match grpc.server_streaming(request, path, Raw).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                match tokio::time::timeout(Duration::from_secs(1), stream.message()).await {
                    Ok(Err(status)) => status,
                    Ok(Ok(_)) | Err(_) => Status::ok(""),
                }
            }
            Err(status) => status,
        }
    } else {
        match grpc.unary(request, path, Raw).await {
            Ok(_) => Status::ok(""),
            Err(status) => status,
        }
    }
}

/// The instance the calls that name one are pointed at.
const TARGET: &str = "target";

/// A valid request for `path` that a hostile field is appended to (in
/// protobuf, a field that comes again replaces a scalar and merges into a
/// message), so that the hostile value reaches the code behind validation
/// of the other fields; `n` makes new names unique. Empty for the rest.
fn base(path: &str, n: usize) -> Vec<u8> {
    let method = path.rsplit('/').next().unwrap_or_default();
    let instance = TARGET.to_owned();
    match method {
        "CreateInstance" => pb::CreateInstanceRequest {
            spec: Some(spec(&format!("hostile-{n}"), "sleep", &["1000"])),
            start: Some(true),
        }
        .encode_to_vec(),
        "StartInstance" => pb::StartInstanceRequest { instance }.encode_to_vec(),
        "StopInstance" => pb::StopInstanceRequest {
            instance,
            ..Default::default()
        }
        .encode_to_vec(),
        "RestartInstance" => pb::RestartInstanceRequest { instance }.encode_to_vec(),
        "RecordActivity" => pb::RecordActivityRequest { instance }.encode_to_vec(),
        "GetInstance" => pb::GetInstanceRequest { instance }.encode_to_vec(),
        "StreamLogs" => pb::StreamLogsRequest {
            instance,
            ..Default::default()
        }
        .encode_to_vec(),
        "PutTemplate" => pb::PutTemplateRequest {
            key: Some(pb::TemplateKey {
                set: "Default".to_owned(),
                title: "hostile".to_owned(),
            }),
            content: "<p>base</p>".to_owned(),
            expected_version: None,
        }
        .encode_to_vec(),
        _ => Vec::new(),
    }
}

/// Puts things back after a call: the target instance exists and runs,
/// and an instance a call created is deleted (stopping its process).
/// Fails if the target can be neither started nor created again (an
/// instance whose actor died holds its name without answering).
async fn restore(connection: &Connection, n: usize) -> Result<(), Status> {
    let mut orchestrator = connection.orchestrator();
    let _ = orchestrator
        .delete_instance(pb::DeleteInstanceRequest {
            instance: format!("hostile-{n}"),
            force: true,
            signal_external: false,
        })
        .await;
    let start = orchestrator
        .start_instance(pb::StartInstanceRequest {
            instance: TARGET.to_owned(),
        })
        .await;
    match start {
        Err(status) if status.code() == Code::NotFound => orchestrator
            .create_instance(pb::CreateInstanceRequest {
                spec: Some(spec(TARGET, "sleep", &["1000"])),
                start: Some(true),
            })
            .await
            .map(drop),
        _ => Ok(()),
    }
}

/// Anything at or below `dir`, by name, containing the escape marker.
fn escaped(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.to_string_lossy().contains(ESCAPE))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_field_of_every_request_survives_hostile_values() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    create(&connection, spec(TARGET, "sleep", &["1000"])).await;
    let (methods, messages) = contract();
    assert!(methods.len() >= 30, "the contract has its services");
    let mut calls = 0;
    let mut failures = Vec::new();
    for (path, method) in &methods {
        // Any ShutdownRequest that decodes stops the daemon, which is its
        // job (tests/integration/shutdown.rs); the suite needs it serving.
        if path == "/outpost.v1.Orchestrator/Shutdown" {
            continue;
        }
        let input = messages.get(method.input_type());
        let streaming = method.server_streaming();
        for (what, hostile) in messages.hostile_requests(input, DEPTH) {
            calls += 1;
            let mut request = base(path, calls);
            request.extend(hostile);
            let answer =
                tokio::time::timeout(CALL_DEADLINE, call(&connection, path, streaming, request))
                    .await;
            if let Err(status) = restore(&connection, calls).await {
                panic!(
                    "after {path} {what}, {TARGET} can be neither started nor created: {status:?}\n{}",
                    failures.join("\n")
                );
            }
            let Ok(status) = answer else {
                failures.push(format!("{path} {what}: no answer within {CALL_DEADLINE:?}"));
                continue;
            };
            let bad_code = matches!(
                status.code(),
                Code::Internal
                    | Code::Unknown
                    | Code::Unimplemented
                    | Code::DataLoss
                    | Code::Cancelled
            );
            if bad_code || status.message().len() > MAX_MESSAGE {
                let mut message = status.message().to_owned();
                message.truncate(300);
                failures.push(format!(
                    "{path} {what}: {:?} ({} bytes) {message}",
                    status.code(),
                    status.message().len()
                ));
            }
        }
    }
    println!("{calls} hostile calls over {} methods", methods.len());
    assert!(calls > 1000, "only {calls} calls were generated");
    assert!(
        failures.is_empty(),
        "{} of {calls} hostile calls went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Still serving, healthy, and nothing landed outside its directories.
    let health = connection
        .health()
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING after the hostile calls");
    let output = daemon.ctl(&["ls"]);
    assert!(
        output.status.success(),
        "{}",
        crate::harness::stderr(&output)
    );
    let outside = [Path::new("/tmp"), daemon.dir.path()]
        .iter()
        .flat_map(|dir| escaped(dir))
        .collect::<Vec<_>>();
    assert!(
        outside.is_empty(),
        "written outside the daemon's directories: {outside:?}"
    );
    // Every process the daemon started belongs to an instance it knows.
    assert_no_stray_processes(&daemon, &connection).await;
}
