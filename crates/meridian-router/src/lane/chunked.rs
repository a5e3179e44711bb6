//! Finding where a chunked message ends (RFC 9112 §7.1), so its bytes can be relayed as they
//! came, without decoding and encoding them again.

/// A chunked body being scanned, fed the bytes in any pieces.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunked {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Reading a chunk's size: how many hex digits so far, and their value.
    #[default]
    SizeStart,
    Size(u64),
    /// A chunk extension, up to the CR that ends the size line.
    Extension(u64),
    SizeLf(u64),
    /// Data bytes left in the chunk.
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: a trailer line starts here, or the final CRLF.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// A chunked body that breaks the framing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Longest chunk size accepted: 15 hex digits, far beyond any real chunk.
const MAX_SIZE_DIGITS: u32 = 15;

impl Chunked {
    /// Whether the whole message has been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `bytes`, the next ones of the body. Returns how many of them belong to it: all
    /// of them, unless the body ends inside (then [`Chunked::is_done`] holds).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            if let State::Data(left) = self.state {
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                let left = left - take;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::SizeStart, _) => State::Size(hex(b).ok_or(Malformed)?),
                (State::Size(n), b'\r') => State::SizeLf(n),
                (State::Size(n), b';' | b' ' | b'\t') => State::Extension(n),
                (State::Size(n), _) => {
                    let digit = hex(b).ok_or(Malformed)?;
                    if n >> (4 * (MAX_SIZE_DIGITS - 1)) != 0 {
                        return Err(Malformed);
                    }
                    State::Size(n << 4 | digit)
                }
                (State::Extension(n), b'\r') => State::SizeLf(n),
                (State::Extension(_), b'\n') => return Err(Malformed),
                (State::Extension(n), _) => State::Extension(n),
                (State::SizeLf(0), b'\n') => State::TrailerStart,
                (State::SizeLf(n), b'\n') => State::Data(n),
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::SizeStart,
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::TrailerStart | State::TrailerLine, b'\n') => return Err(Malformed),
                (State::TrailerLine, b'\r') => State::TrailerLf,
                (State::TrailerStart | State::TrailerLine, _) => State::TrailerLine,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => {
                    self.state = State::Done;
                    return Ok(i);
                }
                (State::Done, _) => return Ok(i - 1),
                _ => return Err(Malformed),
            };
        }
        Ok(i)
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `body` in pieces of `step` bytes; returns the bytes that belong to it.
    fn scan(body: &[u8], step: usize) -> Result<usize, Malformed> {
        let mut c = Chunked::default();
        let mut used = 0;
        for piece in body.chunks(step) {
            let n = c.feed(piece)?;
            used += n;
            if c.is_done() {
                return Ok(used);
            }
            assert_eq!(n, piece.len(), "an unfinished body takes every byte");
        }
        Ok(used)
    }

    #[test]
    fn the_end_is_found_whatever_the_pieces() {
        let body =
            b"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        for step in 1..=body.len() {
            assert_eq!(scan(body, step), Ok(end), "pieces of {step}");
        }
    }

    #[test]
    fn trailers_are_part_of_the_message() {
        let body = b"3\r\nabc\r\n0\r\nChecksum: 1\r\nOther: 2\r\n\r\nrest";
        for step in [1, 4, body.len()] {
            assert_eq!(scan(body, step), Ok(body.len() - 4));
        }
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let mut c = Chunked::default();
        assert_eq!(c.feed(b"10\r\nabc"), Ok(7));
        assert!(!c.is_done());
    }

    #[test]
    fn broken_framing_is_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\nhello",
            b"0\r\n\n",
            b"1ffffffffffffffff\r\n",
            b"5;ext\n",
            b"0\r\nTrailer\n",
        ] {
            assert_eq!(scan(bad, bad.len()), Err(Malformed), "{bad:?}");
        }
    }
}
