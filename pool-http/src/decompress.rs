//! Transparent response decompression, as Go's Transport: a request without its own
//! `Accept-Encoding` asks for what this build decodes, and the response body is decoded as
//! it is read.
//!
//! # Invariants
//!
//! - Only a request the client asked for compression on is decoded ([`ask`] said so): a
//!   caller who set `Accept-Encoding` gets the bytes the server sent, as in Go. A request
//!   with a `Range` is not asked for compression either (a range of a compressed stream
//!   cannot be decoded on its own), nor is any request when compression is off or this build
//!   has no decoding feature.
//! - [`decode`] decodes a body whose `Content-Encoding` is one coding this build knows
//!   (`gzip` or `x-gzip`, `br`, `zstd`; case and surrounding blanks do not matter), and then
//!   removes `Content-Encoding` and `Content-Length`, which described the compressed bytes.
//!   Stacked codings (`gzip, br`), unknown ones, and bodies with nothing in them (`HEAD`,
//!   `1xx`, `204`, `304`, an empty body) are left as they came.
//! - The [`Decoder`] sits inside the [`Body`]: the body hands it each compressed chunk as
//!   it arrives (the connection's lease, deadline and drain stay the body's), and takes out
//!   decoded chunks of at most [`CHUNK`] bytes. Streaming memory is therefore bounded by what
//!   the caller keeps, whatever the compression ratio (a gzip bomb); collecting is bounded by
//!   the body limit, counted on the decoded bytes.
//! - A decoder ends only at the end of the compressed body (it reads on after each gzip
//!   member or zstd frame for another one): the body's last frame is read by then, and the
//!   connection is back in the pool. Data after the end of a stream is a decode error, as a
//!   truncated stream is; a body with no byte at all (an empty chunked body labelled `gzip`)
//!   is empty, as in Go, whatever the coding.

use http::{HeaderValue, header};

use crate::body::Body;
use crate::config::Settings;
use crate::request::RequestBody;

/// What a request asks for: every coding this build decodes (`None`: no decoding feature).
const ACCEPT: Option<&str> = match (
    cfg!(feature = "gzip"),
    cfg!(feature = "brotli"),
    cfg!(feature = "zstd"),
) {
    (true, true, true) => Some("gzip, br, zstd"),
    (true, true, false) => Some("gzip, br"),
    (true, false, true) => Some("gzip, zstd"),
    (true, false, false) => Some("gzip"),
    (false, true, true) => Some("br, zstd"),
    (false, true, false) => Some("br"),
    (false, false, true) => Some("zstd"),
    (false, false, false) => None,
};

/// Adds `Accept-Encoding` when the caller set none and compression is on; whether it did
/// (then the response is the client's to decode).
pub(crate) fn ask(settings: &Settings, req: &mut http::Request<RequestBody>) -> bool {
    let Some(accept) = ACCEPT else {
        return false;
    };
    // Go asks for gzip on neither a HEAD (no body to decode) nor a range request.
    if req.method() == http::Method::HEAD {
        return false;
    }
    let headers = req.headers_mut();
    // Most requests carry no header of their own: then neither lookup is needed.
    if !settings.compression
        || (!headers.is_empty()
            && (headers.contains_key(header::ACCEPT_ENCODING)
                || headers.contains_key(header::RANGE)))
    {
        return false;
    }
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept));
    true
}

/// Decodes `response`'s body as its `Content-Encoding` says (in place: a response head is
/// hundreds of bytes).
pub(crate) fn decode(response: &mut http::Response<Body>) {
    let status = response.status();
    if status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
        || http_body::Body::is_end_stream(response.body())
    {
        return;
    }
    let mut codings = response.headers().get_all(header::CONTENT_ENCODING).iter();
    let (Some(coding), None) = (codings.next(), codings.next()) else {
        return;
    };
    let Some(decoder) = Decoder::for_coding(coding) else {
        return;
    };
    response.headers_mut().remove(header::CONTENT_ENCODING);
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response.body_mut().decode_with(Box::new(decoder));
}

/// Largest decoded chunk a body yields.
#[cfg(any(feature = "gzip", feature = "brotli", feature = "zstd"))]
pub(crate) const CHUNK: usize = 64 * 1024;

#[cfg(any(feature = "gzip", feature = "brotli", feature = "zstd"))]
pub(crate) use codec::Decoder;

#[cfg(any(feature = "gzip", feature = "brotli", feature = "zstd"))]
mod codec {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::{Buf, BufMut, Bytes, BytesMut};
    use http::HeaderValue;
    use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

    use super::CHUNK;
    use crate::Error;

    /// Room below which the output buffer is grown before a read: a read into a few bytes
    /// would cost a decoder pass for little.
    const MIN_ROOM: usize = 4 * 1024;

    /// Largest zstd window accepted, as a power of two: 8 MiB, the limit RFC 9659 sets for
    /// `Content-Encoding: zstd` (zstd's own default, 128 MiB, would let one response take
    /// that much memory).
    #[cfg(feature = "zstd")]
    const ZSTD_WINDOW_LOG_MAX: u32 = 23;

    /// A coding this build decodes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Coding {
        #[cfg(feature = "gzip")]
        Gzip,
        #[cfg(feature = "brotli")]
        Brotli,
        #[cfg(feature = "zstd")]
        Zstd,
    }

    /// The `Content-Encoding` names of each coding (RFC 9110 has `x-gzip` mean `gzip`).
    const NAMES: &[(&str, Coding)] = &[
        #[cfg(feature = "gzip")]
        ("gzip", Coding::Gzip),
        #[cfg(feature = "gzip")]
        ("x-gzip", Coding::Gzip),
        #[cfg(feature = "brotli")]
        ("br", Coding::Brotli),
        #[cfg(feature = "zstd")]
        ("zstd", Coding::Zstd),
    ];

    impl Coding {
        /// The coding a `Content-Encoding` value names, if it is one this build decodes.
        fn parse(value: &HeaderValue) -> Option<Coding> {
            let value = value.to_str().ok()?.trim();
            NAMES
                .iter()
                .find(|(name, _)| value.eq_ignore_ascii_case(name))
                .map(|&(_, coding)| coding)
        }

        /// The name errors give.
        fn name(self) -> &'static str {
            match self {
                #[cfg(feature = "gzip")]
                Coding::Gzip => "gzip",
                #[cfg(feature = "brotli")]
                Coding::Brotli => "br",
                #[cfg(feature = "zstd")]
                Coding::Zstd => "zstd",
            }
        }
    }

    /// The compressed side of a decoder: the chunk of the body being decoded, handed in by
    /// the [`Body`](crate::Body) that owns the decoder.
    ///
    /// Empty and not ended, it is `Pending` without keeping the waker: the decoder then
    /// returns `Pending` to the body, which polls its connection for the next chunk (and
    /// so registers the waker) before it polls the decoder again.
    #[derive(Debug, Default)]
    struct Feed {
        chunk: Bytes,
        ended: bool,
        /// A compressed byte was handed in: a body that ends before one is empty, not a
        /// stream cut short.
        fed: bool,
    }

    impl Feed {
        fn wants_more(&self) -> bool {
            self.chunk.is_empty() && !self.ended
        }
    }

    impl AsyncRead for Feed {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.wants_more() {
                return Poll::Pending;
            }
            let n = this.chunk.len().min(buf.remaining());
            buf.put_slice(&this.chunk[..n]);
            this.chunk.advance(n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncBufRead for Feed {
        fn poll_fill_buf(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
            let this = self.get_mut();
            if this.wants_more() {
                return Poll::Pending;
            }
            Poll::Ready(Ok(&this.chunk))
        }

        fn consume(self: Pin<&mut Self>, amt: usize) {
            self.get_mut().chunk.advance(amt);
        }
    }

    /// An `async-compression` decoder reading from a [`Feed`].
    #[derive(Debug)]
    enum Codec {
        #[cfg(feature = "gzip")]
        Gzip(async_compression::tokio::bufread::GzipDecoder<Feed>),
        #[cfg(feature = "brotli")]
        Brotli(async_compression::tokio::bufread::BrotliDecoder<Feed>),
        #[cfg(feature = "zstd")]
        Zstd(async_compression::tokio::bufread::ZstdDecoder<Feed>),
    }

    impl Codec {
        fn new(coding: Coding) -> Codec {
            let feed = Feed::default();
            // Every decoder reads on after a member (gzip) or frame (zstd) for another, up
            // to the end of the body: so it ends only there, and anything after a stream is
            // an error rather than ignored.
            match coding {
                #[cfg(feature = "gzip")]
                Coding::Gzip => {
                    let mut d = async_compression::tokio::bufread::GzipDecoder::new(feed);
                    d.multiple_members(true);
                    Codec::Gzip(d)
                }
                #[cfg(feature = "brotli")]
                Coding::Brotli => {
                    let mut d = async_compression::tokio::bufread::BrotliDecoder::new(feed);
                    d.multiple_members(true);
                    Codec::Brotli(d)
                }
                #[cfg(feature = "zstd")]
                Coding::Zstd => {
                    let params = [async_compression::zstd::DParameter::window_log_max(
                        ZSTD_WINDOW_LOG_MAX,
                    )];
                    let mut d =
                        async_compression::tokio::bufread::ZstdDecoder::with_params(feed, &params);
                    d.multiple_members(true);
                    Codec::Zstd(d)
                }
            }
        }

        fn feed(&mut self) -> &mut Feed {
            match self {
                #[cfg(feature = "gzip")]
                Codec::Gzip(d) => d.get_mut(),
                #[cfg(feature = "brotli")]
                Codec::Brotli(d) => d.get_mut(),
                #[cfg(feature = "zstd")]
                Codec::Zstd(d) => d.get_mut(),
            }
        }

        fn reader(&mut self) -> Pin<&mut (dyn AsyncRead + Unpin + Send)> {
            match self {
                #[cfg(feature = "gzip")]
                Codec::Gzip(d) => Pin::new(d),
                #[cfg(feature = "brotli")]
                Codec::Brotli(d) => Pin::new(d),
                #[cfg(feature = "zstd")]
                Codec::Zstd(d) => Pin::new(d),
            }
        }
    }

    /// Decodes a compressed body as the [`Body`](crate::Body) holding it hands in its
    /// chunks.
    ///
    /// The body calls [`poll_chunk`](Decoder::poll_chunk); at `Pending` the decoder has
    /// used up its input, and the body gives it the next compressed chunk with
    /// [`feed`](Decoder::feed), or says the body ended with
    /// [`end_input`](Decoder::end_input).
    #[derive(Debug)]
    pub(crate) struct Decoder {
        coding: Coding,
        codec: Codec,
        /// Decoded bytes go here; each chunk is split off (the rest of the allocation is
        /// kept for the next).
        out: BytesMut,
    }

    impl Decoder {
        /// A decoder for the coding `content_encoding` names, if this build has one.
        pub(crate) fn for_coding(content_encoding: &HeaderValue) -> Option<Decoder> {
            let coding = Coding::parse(content_encoding)?;
            Some(Decoder {
                coding,
                codec: Codec::new(coding),
                out: BytesMut::new(),
            })
        }

        /// The next compressed chunk (the decoder had asked for it with `Pending`).
        pub(crate) fn feed(&mut self, chunk: Bytes) {
            let feed = self.codec.feed();
            debug_assert!(feed.chunk.is_empty(), "fed before the last chunk was used");
            feed.fed |= !chunk.is_empty();
            feed.chunk = chunk;
        }

        /// The compressed body ended: what is left decodes to its end, or fails as
        /// truncated. A body that ended before its first byte is empty (Go reads an empty
        /// `gzip` body as empty: servers label empty bodies with the coding they would use).
        pub(crate) fn end_input(&mut self) {
            self.codec.feed().ended = true;
        }

        /// The next decoded chunk, at most [`CHUNK`] bytes; `None` at the end of the
        /// stream; `Pending` when the decoder needs input (then nothing is registered with
        /// `cx`: the body [`feed`](Decoder::feed)s it).
        ///
        /// # Errors
        /// [`is_decode`](Error::is_decode), naming the coding, when the stream is corrupt,
        /// truncated (after at least one byte), or followed by other data.
        pub(crate) fn poll_chunk(
            &mut self,
            cx: &mut Context<'_>,
        ) -> Poll<Result<Option<Bytes>, Error>> {
            let feed = self.codec.feed();
            if feed.ended && !feed.fed {
                // No compressed byte at all: an empty body, whatever the label.
                return Poll::Ready(Ok(None));
            }
            if self.out.capacity() < MIN_ROOM {
                self.out.reserve(CHUNK);
            }
            let mut room = (&mut self.out).limit(CHUNK);
            let read = tokio_util::io::poll_read_buf(self.codec.reader(), cx, &mut room);
            match read {
                Poll::Ready(Ok(0)) => Poll::Ready(Ok(None)),
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(Some(self.out.split().freeze()))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(Error::decode(self.coding.name(), e))),
                // Only an empty, open feed makes the decoder wait; past the end, a decoder
                // that still waits is a stream cut short (never a hang).
                Poll::Pending if self.codec.feed().ended => {
                    let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                    Poll::Ready(Err(Error::decode(self.coding.name(), e)))
                }
                Poll::Pending => Poll::Pending,
            }
        }
    }
}

/// No decoding feature: no decoder is ever made.
#[cfg(not(any(feature = "gzip", feature = "brotli", feature = "zstd")))]
#[derive(Debug)]
pub(crate) enum Decoder {}

#[cfg(not(any(feature = "gzip", feature = "brotli", feature = "zstd")))]
impl Decoder {
    fn for_coding(_: &HeaderValue) -> Option<Decoder> {
        None
    }

    pub(crate) fn feed(&mut self, _: bytes::Bytes) {
        match *self {}
    }

    pub(crate) fn end_input(&mut self) {
        match *self {}
    }

    pub(crate) fn poll_chunk(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Option<bytes::Bytes>, crate::Error>> {
        match *self {}
    }
}

#[cfg(all(test, feature = "gzip", feature = "brotli", feature = "zstd"))]
mod tests {
    use std::task::{Context, Poll, Waker};

    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        async_compression::tokio::bufread::GzipEncoder::new(data)
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    }

    /// Feeds `input` in chunks of `step` bytes, then its end; every decoded chunk.
    fn run(mut decoder: Decoder, input: &[u8], step: usize) -> Result<Vec<Bytes>, crate::Error> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut chunks = input.chunks(step);
        let mut out = Vec::new();
        loop {
            match decoder.poll_chunk(&mut cx) {
                Poll::Ready(Ok(Some(chunk))) => out.push(chunk),
                Poll::Ready(Ok(None)) => return Ok(out),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => match chunks.next() {
                    Some(chunk) => decoder.feed(Bytes::copy_from_slice(chunk)),
                    None => decoder.end_input(),
                },
            }
        }
    }

    fn gzip_decoder() -> Decoder {
        Decoder::for_coding(&HeaderValue::from_static("gzip")).unwrap()
    }

    #[test]
    fn accept_encoding_names_every_coding_decoded() {
        assert_eq!(ACCEPT, Some("gzip, br, zstd"));
        for name in ["gzip", "br", "zstd"] {
            assert!(Decoder::for_coding(&HeaderValue::from_static(name)).is_some());
        }
    }

    #[test]
    fn one_known_coding_is_decoded_whatever_its_case_and_blanks() {
        for value in ["GZip", " gzip ", "x-gzip", "BR", "Zstd\t"] {
            let value = HeaderValue::from_str(value).unwrap();
            assert!(Decoder::for_coding(&value).is_some(), "{value:?}");
        }
        for value in ["gzip, br", "deflate", "identity", "", "gzip;q=1"] {
            let value = HeaderValue::from_str(value).unwrap();
            assert!(Decoder::for_coding(&value).is_none(), "{value:?}");
        }
    }

    #[tokio::test]
    async fn chunks_are_never_larger_than_the_bound() {
        let data = vec![0u8; 1 << 20];
        let compressed = gzip(&data).await;
        let chunks = run(gzip_decoder(), &compressed, compressed.len()).unwrap();
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
        assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), data.len());
    }

    #[tokio::test]
    async fn members_one_after_another_are_one_stream() {
        let mut compressed = gzip(b"hello ").await;
        compressed.extend(gzip(b"world").await);
        let chunks = run(gzip_decoder(), &compressed, 7).unwrap();
        assert_eq!(chunks.concat(), b"hello world");
    }

    #[tokio::test]
    async fn a_truncated_stream_is_an_error() {
        let compressed = gzip(&[7u8; 10_000]).await;
        for cut in [1, 10, compressed.len() / 2, compressed.len() - 1] {
            let e = run(gzip_decoder(), &compressed[..cut], 3).unwrap_err();
            assert!(e.is_decode(), "cut at {cut}: {e:?}");
        }
    }

    #[tokio::test]
    async fn an_empty_body_is_empty_and_one_cut_after_a_byte_is_an_error_in_every_coding() {
        for name in ["gzip", "br", "zstd"] {
            let decoder = || Decoder::for_coding(&HeaderValue::from_static(name)).unwrap();
            let chunks = run(decoder(), b"", 1).unwrap();
            assert!(chunks.is_empty(), "{name}: {chunks:?}");
            // An empty chunk handed in is still nothing.
            let mut d = decoder();
            let mut cx = Context::from_waker(Waker::noop());
            assert!(d.poll_chunk(&mut cx).is_pending());
            d.feed(Bytes::new());
            assert!(d.poll_chunk(&mut cx).is_pending());
            d.end_input();
            assert!(
                matches!(d.poll_chunk(&mut cx), Poll::Ready(Ok(None))),
                "{name}"
            );
        }
        use async_compression::tokio::bufread::{BrotliEncoder, ZstdEncoder};
        let (mut br, mut zstd) = (Vec::new(), Vec::new());
        BrotliEncoder::new(&b"hello"[..])
            .read_to_end(&mut br)
            .await
            .unwrap();
        ZstdEncoder::new(&b"hello"[..])
            .read_to_end(&mut zstd)
            .await
            .unwrap();
        for (name, compressed) in [("gzip", gzip(b"hello").await), ("br", br), ("zstd", zstd)] {
            let decoder = Decoder::for_coding(&HeaderValue::from_static(name)).unwrap();
            let e = run(decoder, &compressed[..1], 1).unwrap_err();
            assert!(e.is_decode(), "{name} cut after a byte: {e:?}");
        }
    }

    #[tokio::test]
    async fn data_after_the_stream_is_an_error() {
        let mut compressed = gzip(b"hello").await;
        compressed.extend_from_slice(b"trailing");
        let e = run(gzip_decoder(), &compressed, 4).unwrap_err();
        assert!(e.is_decode(), "{e:?}");
    }
}
