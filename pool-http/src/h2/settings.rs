//! The server's `SETTINGS_MAX_CONCURRENT_STREAMS`, read off the frames it sends.
//!
//! hyper applies the server's SETTINGS in the HTTP/2 connection task it spawns itself and
//! tells nobody; so the connection's reading side (plain text, after TLS) passes what it
//! reads through a [`SettingsWatch`], which follows the frame headers (9 bytes: length,
//! type, flags, stream) and reads the parameters (6 bytes each: id, value) of each SETTINGS
//! frame that is not an ACK. At the end of such a frame, the limit is: the value of its last
//! `MAX_CONCURRENT_STREAMS` (id 3); else, for the server's first SETTINGS, unlimited (RFC
//! 9113: no limit until one is set), as h2 reads it; else unchanged. A change is published
//! to the connection's [`Link`] and the client's shared connections are told.
//!
//! Whatever the server sends, the watch keeps a fixed few bytes, never panics, and never
//! changes what hyper reads: a frame it cannot make sense of is skipped by its length, and
//! h2 (which reads the same bytes) ends a connection that breaks the protocol.

use std::sync::Arc;

use crate::manager::Link;

/// Frame type of SETTINGS.
const SETTINGS: u8 = 0x4;
/// Flag of a SETTINGS that acknowledges ours.
const ACK: u8 = 0x1;
/// Parameter id of `SETTINGS_MAX_CONCURRENT_STREAMS`.
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// Follows the frames a server sends on one connection (see the module docs).
pub(crate) struct SettingsWatch {
    link: Arc<Link>,
    /// The frame header being read, and how much of it is in.
    header: [u8; 9],
    have_header: usize,
    /// Payload bytes of the current frame still to come.
    left: usize,
    /// The current frame is a SETTINGS (not an ACK): its parameters are read.
    in_settings: bool,
    /// The parameter being read, and how much of it is in.
    param: [u8; 6],
    have_param: usize,
    /// The last `MAX_CONCURRENT_STREAMS` of the current SETTINGS.
    found: Option<u32>,
    /// A SETTINGS (not an ACK) was read whole before.
    seen: bool,
}

impl SettingsWatch {
    /// Watches the frames of the connection `link` stands for.
    pub fn new(link: Arc<Link>) -> SettingsWatch {
        SettingsWatch {
            link,
            header: [0; 9],
            have_header: 0,
            left: 0,
            in_settings: false,
            param: [0; 6],
            have_param: 0,
            found: None,
            seen: false,
        }
    }

    /// Bytes just read from the server, in order.
    pub fn read(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left == 0 && self.have_header < 9 {
                let n = (9 - self.have_header).min(bytes.len());
                self.header[self.have_header..self.have_header + n].copy_from_slice(&bytes[..n]);
                self.have_header += n;
                bytes = &bytes[n..];
                if self.have_header == 9 {
                    self.start_frame();
                }
                continue;
            }
            let n = self.left.min(bytes.len());
            if self.in_settings {
                self.params(&bytes[..n]);
            }
            self.left -= n;
            bytes = &bytes[n..];
            if self.left == 0 {
                self.end_frame();
            }
        }
    }

    /// A frame header is in: what its payload is.
    fn start_frame(&mut self) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        self.left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        self.in_settings = kind == SETTINGS && flags & ACK == 0;
        self.have_param = 0;
        self.found = None;
        if self.left == 0 {
            self.end_frame();
        }
    }

    /// Parameters of a SETTINGS, possibly split anywhere.
    fn params(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = (6 - self.have_param).min(bytes.len());
            self.param[self.have_param..self.have_param + n].copy_from_slice(&bytes[..n]);
            self.have_param += n;
            bytes = &bytes[n..];
            if self.have_param == 6 {
                self.have_param = 0;
                let [i0, i1, v0, v1, v2, v3] = self.param;
                if u16::from_be_bytes([i0, i1]) == MAX_CONCURRENT_STREAMS {
                    self.found = Some(u32::from_be_bytes([v0, v1, v2, v3]));
                }
            }
        }
    }

    /// The current frame is read whole; a SETTINGS publishes its limit.
    fn end_frame(&mut self) {
        self.have_header = 0;
        if !std::mem::take(&mut self.in_settings) {
            return;
        }
        let limit = match self.found.take() {
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None if !self.seen => Some(usize::MAX),
            None => None,
        };
        self.seen = true;
        if let Some(limit) = limit {
            self.link.set_max_streams(limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watch on a connection of no client.
    fn watch() -> SettingsWatch {
        SettingsWatch::new(Link::new(
            &crate::Origin::from_url("http://a.com/").unwrap(),
            std::sync::Weak::new(),
        ))
    }

    /// One frame of `kind` on stream 0.
    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    /// A SETTINGS frame (not an ACK) with `params` as (id, value).
    fn settings(params: &[(u16, u32)]) -> Vec<u8> {
        let payload: Vec<u8> = params
            .iter()
            .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
            .collect();
        frame(SETTINGS, 0, &payload)
    }

    #[test]
    fn the_limit_follows_every_settings_whatever_the_split() {
        let mut bytes = settings(&[(1, 4096), (3, 1), (4, 65535)]);
        bytes.extend(frame(0x0, 0x1, b"data of some stream"));
        bytes.extend(frame(SETTINGS, ACK, &[]));
        bytes.extend(settings(&[(3, 7)]));
        bytes.extend(settings(&[(5, 16384)]));
        for step in [1, 2, 5, 9, 10, 64, bytes.len()] {
            let mut w = watch();
            let mut seen = Vec::new();
            for chunk in bytes.chunks(step) {
                w.read(chunk);
                seen.push(w.link.max_streams());
            }
            assert_eq!(w.link.max_streams(), Some(7), "step {step}");
            assert!(
                seen.contains(&Some(1)) || step == bytes.len(),
                "step {step}"
            );
        }
    }

    #[test]
    fn a_first_settings_without_the_limit_is_unlimited_and_a_later_one_changes_nothing() {
        let mut w = watch();
        assert_eq!(
            w.link.max_streams(),
            None,
            "unknown until the first SETTINGS"
        );
        w.read(&frame(SETTINGS, ACK, &[]));
        assert_eq!(
            w.link.max_streams(),
            None,
            "an ACK is not the server's SETTINGS"
        );
        w.read(&settings(&[(4, 1 << 20)]));
        assert_eq!(w.link.max_streams(), Some(usize::MAX));
        w.read(&settings(&[(3, 0)]));
        assert_eq!(w.link.max_streams(), Some(0));
        w.read(&settings(&[(1, 0)]));
        assert_eq!(w.link.max_streams(), Some(0));
        w.read(&settings(&[(3, u32::MAX)]));
        assert_eq!(w.link.max_streams(), Some(u32::MAX as usize));
    }

    #[test]
    fn garbage_never_panics_and_keeps_no_more_than_a_frame_header() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut w = watch();
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let bytes = rng.to_le_bytes();
            w.read(&bytes[..(rng % 9) as usize]);
        }
        // A huge declared length is only counted down, never buffered.
        let mut w = watch();
        w.read(&[0xff, 0xff, 0xff, SETTINGS, 0, 0, 0, 0, 0]);
        w.read(&[0u8; 4096]);
        assert!(w.left > 0);
    }
}
