//! A small client of the EC2 Query API: the standard AWS credentials and
//! region (environment, then the shared config and credentials files of
//! `AWS_PROFILE`), requests signed with SigV4 (`aws-sigv4`), sent over a
//! blocking HTTP client (`ureq`, rustls), XML answers read into a small tree
//! (`quick-xml`). Not the AWS SDK: a handful of actions is all cloud mode
//! needs, and the SDK took minutes and gigabytes to build here.
//!
//! Every value comes from `distzero_core::Settings` (which reads the
//! environment); the shared files are read from disk. Secrets never reach a
//! log or an error message.

use distzero_core::{Error, Result, Settings};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The EC2 API version of every request.
pub const API_VERSION: &str = "2016-11-15";
/// Deadline of one HTTP request (connect, send, read).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of an answer read (DescribeInstances of a busy account stays far below).
const MAX_ANSWER_BYTES: u64 = 16 << 20;
/// Tries of one request on throttling, 5xx or a broken connection.
const TRIES: u32 = 4;

/// Access key, secret and optional session token. `Debug` hides the secrets.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Where they came from, for messages.
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials({} from {})",
            self.access_key_id, self.source
        )
    }
}

/// Sections of an INI file (`[name]` -> key -> value), as the AWS shared
/// files write them. `[profile x]` in the config file is `x`.
fn parse_ini(text: &str, config_file: bool) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            let name = if config_file {
                name.strip_prefix("profile ").map(str::trim).unwrap_or(name)
            } else {
                name
            };
            section = Some(name.to_string());
            continue;
        }
        if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
            out.entry(s.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

/// The shared files of the settings: (config, credentials).
fn shared_files(settings: &Settings) -> (Option<PathBuf>, Option<PathBuf>) {
    let home = Some(settings.raw("HOME"))
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let pick = |var: &str, name: &str| match settings.raw(var) {
        "" => home.as_ref().map(|h| h.join(".aws").join(name)),
        f => Some(PathBuf::from(f)),
    };
    (
        pick("AWS_CONFIG_FILE", "config"),
        pick("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
    )
}

fn profile_name(settings: &Settings) -> String {
    match settings.raw("AWS_PROFILE") {
        "" => "default".to_string(),
        p => p.to_string(),
    }
}

/// One profile's keys of a shared file; none if the file is absent.
fn profile_of(
    path: &Option<PathBuf>,
    profile: &str,
    config_file: bool,
) -> BTreeMap<String, String> {
    let Some(p) = path else {
        return BTreeMap::new();
    };
    match std::fs::read_to_string(p) {
        Ok(text) => parse_ini(&text, config_file)
            .remove(profile)
            .unwrap_or_default(),
        Err(_) => BTreeMap::new(),
    }
}

/// The credentials of the settings: `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), else the profile's in
/// the shared credentials file, else in the shared config file. None: no
/// credentials anywhere (the caller says how to give some).
pub fn credentials(settings: &Settings) -> Result<Option<Credentials>> {
    let id = settings.raw("AWS_ACCESS_KEY_ID");
    let secret = settings.raw("AWS_SECRET_ACCESS_KEY");
    let token = Some(settings.raw("AWS_SESSION_TOKEN"))
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    match (id.is_empty(), secret.is_empty()) {
        (false, false) => {
            return Ok(Some(Credentials {
                access_key_id: id.to_string(),
                secret_access_key: secret.to_string(),
                session_token: token,
                source: "AWS_ACCESS_KEY_ID".into(),
            }))
        }
        (false, true) => {
            return Err(Error::Setting(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both, or neither to use the shared credentials file".into(),
            ))
        }
        (true, false) => {
            return Err(Error::Setting(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both, or neither to use the shared credentials file".into(),
            ))
        }
        (true, true) => {}
    }
    let (config, creds) = shared_files(settings);
    let profile = profile_name(settings);
    for (path, config_file) in [(&creds, false), (&config, true)] {
        let p = profile_of(path, &profile, config_file);
        let (Some(id), Some(secret)) = (p.get("aws_access_key_id"), p.get("aws_secret_access_key"))
        else {
            continue;
        };
        return Ok(Some(Credentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: p.get("aws_session_token").cloned(),
            source: format!(
                "profile {profile} of {}",
                path.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        }));
    }
    Ok(None)
}

/// The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, else the profile's in the
/// shared config file. None: no region anywhere.
pub fn region(settings: &Settings) -> Option<String> {
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if !settings.raw(var).is_empty() {
            return Some(settings.raw(var).to_string());
        }
    }
    let (config, _) = shared_files(settings);
    profile_of(&config, &profile_name(settings), true)
        .get("region")
        .cloned()
}

/// The EC2 endpoint: `DISTZERO_EC2_ENDPOINT`, `AWS_ENDPOINT_URL`, else the
/// region's public one. Checked to be an http(s) URL.
pub fn ec2_endpoint(settings: &Settings, region: &str) -> Result<String> {
    let (var, url) = match (
        settings.raw("DISTZERO_EC2_ENDPOINT"),
        settings.raw("AWS_ENDPOINT_URL"),
    ) {
        ("", "") => return Ok(format!("https://ec2.{region}.amazonaws.com/")),
        ("", u) => ("AWS_ENDPOINT_URL", u),
        (u, _) => ("DISTZERO_EC2_ENDPOINT", u),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            if url.ends_with('/') {
                Ok(url.to_string())
            } else {
                Ok(format!("{url}/"))
            }
        }
        _ => Err(Error::Setting(format!(
            "{var}={url:?} is not valid: {var} accepts an http:// or https:// URL such as http://127.0.0.1:5000"
        ))),
    }
}

/// An element of an XML answer: its local name, its text, its children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Xml {
    pub name: String,
    pub text: String,
    pub children: Vec<Xml>,
}

impl Xml {
    /// Parse a whole document; the root element.
    pub fn parse(doc: &str) -> std::result::Result<Xml, String> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(doc);
        let mut stack: Vec<Xml> = vec![Xml::default()];
        loop {
            match reader.read_event().map_err(|e| e.to_string())? {
                Event::Start(e) => stack.push(Xml {
                    name: e.local_name().as_ref().to_string(),
                    ..Xml::default()
                }),
                Event::Empty(e) => {
                    let el = Xml {
                        name: e.local_name().as_ref().to_string(),
                        ..Xml::default()
                    };
                    if let Some(top) = stack.last_mut() {
                        top.children.push(el);
                    }
                }
                Event::End(_) => {
                    let done = stack.pop().ok_or("unbalanced XML")?;
                    let parent = stack.last_mut().ok_or("unbalanced XML")?;
                    parent.children.push(done);
                }
                Event::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&t.into_inner());
                    }
                }
                Event::CData(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&t.into_inner());
                    }
                }
                Event::GeneralRef(r) => {
                    let c = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                        Some(c) => c,
                        None => match &*r {
                            "amp" => '&',
                            "lt" => '<',
                            "gt" => '>',
                            "quot" => '"',
                            "apos" => '\'',
                            other => return Err(format!("unknown XML entity &{other};")),
                        },
                    };
                    if let Some(top) = stack.last_mut() {
                        top.text.push(c);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        let root = stack.pop().ok_or("unbalanced XML")?;
        if !stack.is_empty() {
            return Err("unbalanced XML".into());
        }
        root.children
            .into_iter()
            .next()
            .ok_or_else(|| "no XML element".to_string())
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Xml> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the element at `path` (child names), trimmed.
    pub fn get(&self, path: &[&str]) -> Option<&str> {
        let mut at = self;
        for p in path {
            at = at.child(p)?;
        }
        Some(at.text.trim())
    }

    /// The `item` children of the child at `path` (EC2's lists).
    pub fn items(&self, path: &[&str]) -> Vec<&Xml> {
        let mut at = self;
        for p in path {
            match at.child(p) {
                Some(c) => at = c,
                None => return Vec::new(),
            }
        }
        at.children.iter().filter(|c| c.name == "item").collect()
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The API answered with an error (code, message, HTTP status).
    Api {
        code: String,
        message: String,
        status: u16,
    },
    /// No answer: connection refused, timeout, TLS, a malformed answer.
    Transport(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Api {
                code,
                message,
                status,
            } => write!(f, "{code} (HTTP {status}): {message}"),
            CallError::Transport(m) => write!(f, "{m}"),
        }
    }
}

impl CallError {
    /// The API's error code, if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Api { code, .. } => Some(code),
            CallError::Transport(_) => None,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            CallError::Api { code, status, .. } => {
                *status >= 500
                    || matches!(
                        code.as_str(),
                        "Throttling" | "RequestLimitExceeded" | "ServiceUnavailable"
                    )
            }
            CallError::Transport(_) => true,
        }
    }
}

/// A signed-request client of one EC2 endpoint and region.
#[derive(Clone)]
pub struct Ec2Client {
    endpoint: String,
    region: String,
    credentials: Credentials,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Ec2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EC2 at {} ({})", self.endpoint, self.region)
    }
}

/// `k=v&k=v` with the form encoding the EC2 Query API takes (RFC 3986
/// unreserved characters kept, everything else %XX).
pub fn form_encode(params: &[(String, String)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

impl Ec2Client {
    pub fn new(endpoint: String, region: String, credentials: Credentials) -> Ec2Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .redirects(0)
            .build();
        Ec2Client {
            endpoint,
            region,
            credentials,
            agent,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Call `action` with `params`; the root element of the answer. Retries
    /// throttling, 5xx answers and broken connections a few times.
    pub fn call(
        &self,
        action: &str,
        params: &[(String, String)],
    ) -> std::result::Result<Xml, CallError> {
        self.call_service("ec2", API_VERSION, action, params)
    }

    /// [`Ec2Client::call`] for another Query API service at the same
    /// endpoint (`service` is its SigV4 name, such as `iam`; tests set up an
    /// emulator's users with it).
    pub fn call_service(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(String, String)],
    ) -> std::result::Result<Xml, CallError> {
        let mut wait = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match self.call_once(service, version, action, params) {
                Err(e) if e.retryable() && attempt < TRIES => {
                    tracing::debug!(action, attempt, error = %e, "EC2 call failed; retrying");
                    std::thread::sleep(wait);
                    wait *= 3;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    fn call_once(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(String, String)],
    ) -> std::result::Result<Xml, CallError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use aws_sigv4::sign::v4;
        let mut all = vec![
            ("Action".to_string(), action.to_string()),
            ("Version".to_string(), version.to_string()),
        ];
        all.extend(params.iter().cloned());
        let body = form_encode(&all);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let identity = aws_credential_types::Credentials::new(
            self.credentials.access_key_id.clone(),
            self.credentials.secret_access_key.clone(),
            self.credentials.session_token.clone(),
            None,
            "distzero",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| CallError::Transport(format!("signing {action}: {e}")))?
            .into();
        let headers = [("content-type", content_type)];
        let signable = SignableRequest::new(
            "POST",
            &self.endpoint,
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| CallError::Transport(format!("signing {action}: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| CallError::Transport(format!("signing {action}: {e}")))?
            .into_parts();
        let mut req = self
            .agent
            .post(&self.endpoint)
            .set("content-type", content_type);
        for (name, value) in instructions.headers() {
            req = req.set(name, value);
        }
        let (status, text) = match req.send_string(&body) {
            Ok(resp) => (resp.status(), read_body(resp)?),
            Err(ureq::Error::Status(status, resp)) => (status, read_body(resp)?),
            Err(ureq::Error::Transport(t)) => {
                return Err(CallError::Transport(format!(
                    "{action} at {}: {t} (check DISTZERO_EC2_ENDPOINT, AWS_ENDPOINT_URL or AWS_REGION, and the network)",
                    self.endpoint
                )))
            }
        };
        let xml = Xml::parse(&text).map_err(|e| {
            CallError::Transport(format!(
                "{action} at {}: HTTP {status} with an answer that is not XML ({e}): {}",
                self.endpoint,
                text.chars().take(200).collect::<String>()
            ))
        })?;
        if (200..300).contains(&status) && xml.name != "Response" {
            return Ok(xml);
        }
        // <Response><Errors><Error><Code/><Message/></Error></Errors>...
        let err = xml
            .child("Errors")
            .and_then(|e| e.child("Error"))
            .or_else(|| xml.child("Error"));
        let code = err
            .and_then(|e| e.get(&["Code"]))
            .unwrap_or("Unknown")
            .to_string();
        let mut message = err
            .and_then(|e| e.get(&["Message"]))
            .unwrap_or("no message")
            .to_string();
        if matches!(
            code.as_str(),
            "AuthFailure"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "UnauthorizedOperation"
                | "RequestExpired"
        ) {
            message.push_str(&format!(
                " (credentials {} from {}; region {})",
                self.credentials.access_key_id, self.credentials.source, self.region
            ));
        }
        Err(CallError::Api {
            code,
            message,
            status,
        })
    }
}

fn read_body(resp: ureq::Response) -> std::result::Result<String, CallError> {
    use std::io::Read;
    let mut text = String::new();
    resp.into_reader()
        .take(MAX_ANSWER_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| CallError::Transport(format!("reading the answer: {e}")))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs).unwrap()
    }

    #[test]
    fn credentials_come_from_the_environment_then_the_profile() {
        let dir = std::env::temp_dir().join(format!("dz-aws-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".aws")).unwrap();
        std::fs::write(
            dir.join(".aws/credentials"),
            "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n\n[work]\naws_access_key_id=AKWORK\naws_secret_access_key=s2\naws_session_token=tok\n",
        )
        .unwrap();
        std::fs::write(
            dir.join(".aws/config"),
            "[default]\nregion = eu-west-1\n[profile work]\nregion=us-east-2\n",
        )
        .unwrap();
        let home = dir.to_str().unwrap();
        let c = credentials(&settings(&[
            ("HOME", home),
            ("AWS_ACCESS_KEY_ID", "AKENV"),
            ("AWS_SECRET_ACCESS_KEY", "senv"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.access_key_id, "AKENV");
        let s = settings(&[("HOME", home)]);
        let c = credentials(&s).unwrap().unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token),
            ("AKDEFAULT", None)
        );
        assert_eq!(region(&s).as_deref(), Some("eu-west-1"));
        let s = settings(&[("HOME", home), ("AWS_PROFILE", "work")]);
        let c = credentials(&s).unwrap().unwrap();
        assert_eq!(c.access_key_id, "AKWORK");
        assert_eq!(c.session_token.as_deref(), Some("tok"));
        assert!(!format!("{c:?}").contains("s2"), "Debug shows no secret");
        assert_eq!(region(&s).as_deref(), Some("us-east-2"));
        let s = settings(&[
            ("HOME", home),
            ("AWS_PROFILE", "work"),
            ("AWS_REGION", "ap-south-1"),
        ]);
        assert_eq!(region(&s).as_deref(), Some("ap-south-1"));
        let s = settings(&[("HOME", "/nonexistent")]);
        assert!(credentials(&s).unwrap().is_none());
        assert!(region(&s).is_none());
        let e = credentials(&settings(&[("AWS_ACCESS_KEY_ID", "AK")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn endpoints_are_checked() {
        let s = settings(&[]);
        assert_eq!(
            ec2_endpoint(&s, "eu-west-1").unwrap(),
            "https://ec2.eu-west-1.amazonaws.com/"
        );
        let s = settings(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]);
        assert_eq!(ec2_endpoint(&s, "x").unwrap(), "http://127.0.0.1:5000/");
        let s = settings(&[
            ("AWS_ENDPOINT_URL", "http://a:1"),
            ("DISTZERO_EC2_ENDPOINT", "http://b:2/"),
        ]);
        assert_eq!(ec2_endpoint(&s, "x").unwrap(), "http://b:2/");
        let s = settings(&[("DISTZERO_EC2_ENDPOINT", "localhost:5000")]);
        let e = ec2_endpoint(&s, "x").unwrap_err().to_string();
        assert!(
            e.contains("DISTZERO_EC2_ENDPOINT") && e.contains("http://"),
            "{e}"
        );
    }

    #[test]
    fn an_unreachable_endpoint_is_named_with_what_to_check() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let c = Ec2Client::new(
            format!("http://127.0.0.1:{port}/"),
            "us-east-1".into(),
            Credentials {
                access_key_id: "AK".into(),
                secret_access_key: "s".into(),
                session_token: None,
                source: "test".into(),
            },
        );
        let e = c.call("DescribeInstances", &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(e.contains("DISTZERO_EC2_ENDPOINT"), "{e}");
    }

    #[test]
    fn xml_answers_and_errors_parse() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<RunInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r1</requestId>
  <instancesSet><item><instanceId>i-1</instanceId><instanceState><code>0</code><name>pending</name></instanceState>
  <privateIpAddress>10.214.0.4</privateIpAddress><tagSet/><networkInterfaceSet><item><privateIpAddress>9.9.9.9</privateIpAddress></item></networkInterfaceSet></item>
  <item><instanceId>i-2</instanceId><reason>a &amp; b &#x41;</reason></item></instancesSet>
</RunInstancesResponse>"#;
        let x = Xml::parse(doc).unwrap();
        assert_eq!(x.name, "RunInstancesResponse");
        let items = x.items(&["instancesSet"]);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].get(&["instanceId"]), Some("i-1"));
        assert_eq!(items[0].get(&["instanceState", "name"]), Some("pending"));
        assert_eq!(items[0].get(&["privateIpAddress"]), Some("10.214.0.4"));
        assert_eq!(items[1].get(&["reason"]), Some("a & b A"));
        assert!(Xml::parse("<a><b></a>").is_err());
        assert!(Xml::parse("").is_err());
        assert_eq!(
            form_encode(&[("A".into(), "x y/z".into()), ("B.1".into(), "~ok".into())]),
            "A=x%20y%2Fz&B.1=~ok"
        );
    }
}
