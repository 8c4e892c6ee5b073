//! A stand-in agent for the provider's own tests: std only, built statically
//! with rustc by the tests. It takes the agent's command line
//! (`AgentLaunch::args`), needs the cookie on stdin, writes a log line, and
//! answers one-line commands on its port:
//!   ping -> pong | cookie -> cookie <value> | write <text> -> ok (appends to
//!   <data>/file) | read -> the file's lines joined by '|' | dial <addr> ->
//!   `dial ok` if <addr> answers ping within 2 s, else `dial err <why>`.
//! Built with `--cfg standin_fail` it exits at once with an error instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

fn arg(args: &[String], name: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_default()
}

fn dial(addr: &str) -> Result<(), String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    s.write_all(b"ping\n").map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
    if &buf == b"pong\n" { Ok(()) } else { Err("bad reply".into()) }
}

fn serve(stream: TcpStream, data_dir: &str, cookie: &str) {
    let mut out = match stream.try_clone() { Ok(s) => s, Err(_) => return };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let (cmd, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let reply = match cmd {
            "ping" => "pong".to_string(),
            "cookie" => format!("cookie {cookie}"),
            "write" => {
                let path = format!("{data_dir}/file");
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
                writeln!(f, "{rest}").unwrap();
                f.sync_all().unwrap();
                "ok".to_string()
            }
            "read" => std::fs::read_to_string(format!("{data_dir}/file")).unwrap_or_default().lines().collect::<Vec<_>>().join("|"),
            "dial" => match dial(rest) {
                Ok(()) => "dial ok".to_string(),
                Err(e) => format!("dial err {e}"),
            },
            _ => "unknown".to_string(),
        };
        if writeln!(out, "{reply}").is_err() {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if cfg!(standin_fail) {
        eprintln!("standin: failing on purpose: cannot open the flux capacitor");
        std::process::exit(3);
    }
    // As the real agent: the cookie on the first line of stdin.
    let mut cookie = String::new();
    let _ = std::io::stdin().read_line(&mut cookie);
    let cookie = cookie.trim().to_string();
    if cookie.is_empty() {
        eprintln!("standin: no cookie on stdin");
        std::process::exit(2);
    }
    let machine = arg(&args, "--machine");
    let log_dir = arg(&args, "--log-dir");
    let data_dir = arg(&args, "--data-dir");
    let listen = arg(&args, "--listen");
    let line = format!("{{\"level\":\"INFO\",\"machine\":\"m{machine}\",\"message\":\"standin up\",\"listen\":\"{listen}\"}}\n");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(format!("{log_dir}/m{machine}.jsonl")).unwrap();
    f.write_all(line.as_bytes()).unwrap();
    std::fs::write(format!("{log_dir}/m{machine}.log"), format!("m{machine} standin up on {listen}\n")).unwrap();
    println!("standin m{machine} listening on {listen}");
    let listener = TcpListener::bind(&listen).unwrap();
    for stream in listener.incoming().flatten() {
        let (d, c) = (data_dir.clone(), cookie.clone());
        std::thread::spawn(move || serve(stream, &d, &c));
    }
}
