//! [`TestProxy`], the proxy of the proxy tests (`proxy.rs`, `proxy_env.rs`): raw tokio TCP on
//! loopback that tunnels `CONNECT`, forwards absolute-form requests over its own connections,
//! or fails in one of the ways a proxy can ([`Behaviour`]), and records each request head.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Behaviour {
    /// A real proxy: tunnels `CONNECT`, forwards absolute-form requests to their target.
    Forward,
    /// Answers every absolute-form request itself with `proxied`.
    Answer,
    /// Reads the request, then never answers (and keeps the connection open).
    Silent,
    /// Answers `CONNECT` with a status line, then header lines without end.
    EndlessHeader,
    /// Closes the connection once it has read the request.
    Close,
    /// Answers with something that is not HTTP.
    Garbage,
}

/// A proxy on loopback that records each request head it reads.
pub struct TestProxy {
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    /// `auth`: the `Proxy-Authorization` value it requires (407 otherwise).
    pub async fn start(behaviour: Behaviour, auth: Option<&str>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (a, h) = (accepts.clone(), heads.clone());
        let auth = auth.map(str::to_owned);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, behaviour, auth.clone(), h.clone()));
            }
        });
        TestProxy {
            addr,
            accepts,
            heads,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client connection of the proxy.
async fn serve(
    mut client: TcpStream,
    behaviour: Behaviour,
    auth: Option<String>,
    heads: Arc<Mutex<Vec<String>>>,
) {
    let mut upstreams: HashMap<String, TcpStream> = HashMap::new();
    while let Some(head) = read_head(&mut client).await {
        heads.lock().unwrap().push(head.clone());
        match behaviour {
            Behaviour::Silent => std::future::pending::<()>().await,
            Behaviour::Close => return,
            Behaviour::Garbage => {
                let _ = client.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
                return;
            }
            Behaviour::EndlessHeader => {
                let _ = client.write_all(b"HTTP/1.1 200 OK\r\n").await;
                let line = format!("x-endless: {}\r\n", "a".repeat(1000));
                while client.write_all(line.as_bytes()).await.is_ok() {}
                return;
            }
            Behaviour::Forward | Behaviour::Answer => {}
        }
        if auth.is_some() && header(&head, "proxy-authorization") != auth {
            let denied = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                          proxy-authenticate: Basic realm=\"test\"\r\ncontent-length: 0\r\n\r\n";
            if client.write_all(denied.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let mut words = head.split_whitespace();
        let (method, target) = (words.next().unwrap(), words.next().unwrap().to_owned());
        if method == "CONNECT" {
            let Ok(mut upstream) = TcpStream::connect(&target).await else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                return;
            };
            let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
            if client.write_all(ok).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            return;
        }
        if behaviour == Behaviour::Answer {
            let answer = "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nproxied";
            if client.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        // Absolute form: relay the request (heads and empty bodies only) and one response.
        let uri: http::Uri = target.parse().unwrap();
        let authority = uri.authority().unwrap().to_string();
        if !upstreams.contains_key(&authority) {
            let Ok(upstream) = TcpStream::connect(&authority).await else {
                return;
            };
            upstreams.insert(authority.clone(), upstream);
        }
        let upstream = upstreams.get_mut(&authority).unwrap();
        if upstream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let Some(response) = read_head(upstream).await else {
            return;
        };
        let len = header(&response, "content-length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0u8; len];
        if upstream.read_exact(&mut body).await.is_err()
            || client.write_all(response.as_bytes()).await.is_err()
            || client.write_all(&body).await.is_err()
        {
            return;
        }
    }
}

/// A head up to its blank line, byte by byte (so nothing after it is taken); `None` at EOF.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8(head).unwrap())
}

/// The value of header `name` in `head`.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}
