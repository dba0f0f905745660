//! The Lambda Runtime API on loopback, to run a function's release `bootstrap` (or any custom
//! runtime, such as the Python peer) as Lambda does and hand it events one at a time.
//!
//! [`LambdaProcess::start`] listens on a free port of 127.0.0.1, starts the command with the
//! `AWS_LAMBDA_*` variables Lambda sets (`AWS_LAMBDA_RUNTIME_API` pointing here), and waits for
//! its first `GET /invocation/next` (the end of its init). [`LambdaProcess::invoke`] answers the
//! waiting `GET next` with an event, reads the function's `POST /invocation/<id>/response` (an
//! `/error` post is an error), acknowledges it and waits for the next `GET next`.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The path a function polls for its next event.
pub const NEXT: &str = "/2018-06-01/runtime/invocation/next";

/// How long the harness waits for the function's next request.
const PATIENCE: Duration = Duration::from_secs(60);

/// One request the function made to the Runtime API, and when it was fully read.
pub struct RuntimeRequest {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// A request and where its (raw HTTP) answer goes.
type Exchange = (RuntimeRequest, oneshot::Sender<Vec<u8>>);

/// Read one HTTP/1.1 request (Content-Length or chunked body) from `buffer` + `stream`.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<RuntimeRequest> {
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        read_more(stream, buffer).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().context("bad Content-Length")?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
            chunked = true;
        }
    }
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = buffer.windows(2).position(|w| w == b"\r\n") {
                    break end;
                }
                read_more(stream, buffer).await?;
            };
            let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .context("bad chunk size")?;
            buffer.drain(..line_end + 2);
            while buffer.len() < size + 2 {
                read_more(stream, buffer).await?;
            }
            body.extend_from_slice(&buffer[..size]);
            buffer.drain(..size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        while buffer.len() < length {
            read_more(stream, buffer).await?;
        }
        buffer.drain(..length).collect()
    };
    Ok(RuntimeRequest {
        method,
        path,
        body,
        at: Instant::now(),
    })
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let read = stream.read(&mut chunk).await?;
    if read == 0 {
        bail!("connection closed");
    }
    buffer.extend_from_slice(&chunk[..read]);
    Ok(())
}

/// Serve one connection: every request goes to the driver, which decides the answer.
async fn serve_connection(mut stream: TcpStream, exchanges: mpsc::Sender<Exchange>) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    while let Ok(request) = read_request(&mut stream, &mut buffer).await {
        let (answer, response) = oneshot::channel();
        if exchanges.send((request, answer)).await.is_err() {
            return;
        }
        let Ok(bytes) = response.await else { return };
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// A raw HTTP/1.1 response.
pub fn http_response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The function's answer to one event.
pub struct Invocation {
    /// The body it posted as its response.
    pub response: Vec<u8>,
    /// From handing over the event to its response (fully read).
    pub elapsed: Duration,
}

/// A function process polling a Runtime API of its own; killed when dropped.
pub struct LambdaProcess {
    name: String,
    child: Child,
    requests: mpsc::Receiver<Exchange>,
    acceptor: JoinHandle<()>,
    /// The answer to the `GET next` the function is waiting on.
    waiting: Option<oneshot::Sender<Vec<u8>>>,
    /// From just before the process was spawned to its first `GET next`.
    pub init: Duration,
}

impl LambdaProcess {
    /// Start `command` (its program, arguments, environment and output already set) as function
    /// `name` with the variables Lambda sets, and wait until it asks for its first event.
    pub async fn start(mut command: Command, name: &str, log_stream: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address: SocketAddr = listener.local_addr()?;
        let (exchanges, requests) = mpsc::channel::<Exchange>(4);
        let acceptor = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, exchanges.clone()));
            }
        });
        command
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream)
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                acceptor.abort();
                return Err(error).with_context(|| format!("starting {name}"));
            }
        };
        let mut process = LambdaProcess {
            name: name.to_owned(),
            child,
            requests,
            acceptor,
            waiting: None,
            init: Duration::ZERO,
        };
        let (request, answer) = process.next().await?;
        if request.method != "GET" || request.path != NEXT {
            bail!(
                "{name}: expected GET next, got {} {}: {}",
                request.method,
                request.path,
                String::from_utf8_lossy(&request.body)
            );
        }
        process.init = request.at - spawned_at;
        process.waiting = Some(answer);
        Ok(process)
    }

    /// Hand the function one event as invocation `request_id` and return its response. An error
    /// posted by the function (`/error`) or anything unexpected is an error.
    pub async fn invoke(&mut self, request_id: &str, event: &[u8]) -> Result<Invocation> {
        let answer = self
            .waiting
            .take()
            .with_context(|| format!("{} is not waiting for an event", self.name))?;
        let deadline = chrono::Utc::now().timestamp_millis() + 900_000;
        let headers = [
            ("Content-Type", "application/json".to_owned()),
            ("Lambda-Runtime-Aws-Request-Id", request_id.to_owned()),
            ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
            (
                "Lambda-Runtime-Invoked-Function-Arn",
                format!(
                    "arn:aws:lambda:us-east-1:123456789012:function:{}",
                    self.name
                ),
            ),
            (
                "Lambda-Runtime-Trace-Id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0".to_owned(),
            ),
        ];
        let sent_at = Instant::now();
        let _ = answer.send(http_response("200 OK", &headers, event));
        let (request, reply) = self.next().await?;
        let elapsed = request.at - sent_at;
        let expected = format!("/2018-06-01/runtime/invocation/{request_id}/response");
        if request.path != expected {
            let _ = reply.send(http_response("202 Accepted", &[], b"{\"status\":\"OK\"}"));
            bail!(
                "{} invocation {request_id}: {} {}: {}",
                self.name,
                request.method,
                request.path,
                String::from_utf8_lossy(&request.body)
            );
        }
        let response = request.body;
        let _ = reply.send(http_response("202 Accepted", &[], b"{\"status\":\"OK\"}"));
        let (request, waiting) = self.next().await?;
        if request.path != NEXT {
            bail!("{}: expected GET next, got {}", self.name, request.path);
        }
        self.waiting = Some(waiting);
        Ok(Invocation { response, elapsed })
    }

    /// The process ID (`None` once it has exited).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// End the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        self.acceptor.abort();
    }

    /// The function's next request to the Runtime API.
    async fn next(&mut self) -> Result<Exchange> {
        tokio::time::timeout(PATIENCE, self.requests.recv())
            .await
            .with_context(|| {
                format!(
                    "no request from {} within {} s",
                    self.name,
                    PATIENCE.as_secs()
                )
            })?
            .context("runtime API closed")
    }
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// `VmHWM` (peak resident set) of a running process, in KiB.
pub fn peak_rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}
