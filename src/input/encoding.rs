//! Encodings: choosing how a file's bytes become text (byte-order mark, UTF-8, Shift_JIS,
//! sniffed over the whole file where it can be read twice) and the messages for bytes that do
//! not decode. Must not parse CSV or check cells.

use std::io::{self, Read};

use encoding_rs::{DecoderResult, Encoding, SHIFT_JIS, UTF_8, UTF_16BE, UTF_16LE};

/// How much of a non-seekable input is buffered to guess its encoding.
pub(super) const SNIFF_BYTES: usize = 64 * 1024;

pub(super) const INVALID_UTF8: &str =
    "invalid UTF-8 bytes; if this file is not UTF-8, pass --encoding shift_jis";
pub(super) const INVALID_SJIS: &str =
    "invalid Shift_JIS bytes; if this file is not Shift_JIS, pass --encoding utf-8";
pub(super) const INVALID_UTF16: &str = "invalid UTF-16 data";

#[derive(Debug, Clone, Copy)]
pub(super) struct Detected {
    pub(super) encoding: &'static Encoding,
    pub(super) name: &'static str,
}

impl Detected {
    /// What a cell with bytes that did not decode says, with the remedy.
    pub(super) fn bad_bytes(&self) -> &'static str {
        if self.encoding == SHIFT_JIS {
            INVALID_SJIS
        } else if self.encoding == UTF_8 {
            INVALID_UTF8
        } else {
            INVALID_UTF16
        }
    }
}

pub(super) const PLAIN_UTF8: Detected = Detected {
    encoding: UTF_8,
    name: "UTF-8",
};
pub(super) const BOM_UTF8: Detected = Detected {
    encoding: UTF_8,
    name: "UTF-8 with BOM",
};
pub(super) const SJIS: Detected = Detected {
    encoding: SHIFT_JIS,
    name: "Shift_JIS",
};

/// A byte-order mark decides the encoding whatever was asked for: no Shift_JIS file starts
/// with one, and honouring it beats decoding Excel's "CSV UTF-8" as mojibake.
pub(super) fn from_bom(prefix: &[u8]) -> Option<Detected> {
    if prefix.starts_with(b"\xEF\xBB\xBF") {
        Some(BOM_UTF8)
    } else if prefix.starts_with(b"\xFF\xFE") {
        Some(Detected {
            encoding: UTF_16LE,
            name: "UTF-16LE",
        })
    } else if prefix.starts_with(b"\xFE\xFF") {
        Some(Detected {
            encoding: UTF_16BE,
            name: "UTF-16BE",
        })
    } else {
        None
    }
}

/// Runs strict UTF-8 and Shift_JIS decoders side by side over chunks; each drops out at its
/// first malformed sequence.
pub(super) struct Sniffer {
    utf8: Option<encoding_rs::Decoder>,
    pub(super) sjis: Option<encoding_rs::Decoder>,
    pub(super) scratch: Vec<u8>,
}

impl Sniffer {
    pub(super) fn new() -> Self {
        Sniffer {
            utf8: Some(UTF_8.new_decoder_without_bom_handling()),
            sjis: Some(SHIFT_JIS.new_decoder_without_bom_handling()),
            scratch: vec![0; 16 * 1024],
        }
    }

    /// `last` says no more bytes follow, so a sequence cut at the end is malformed rather than
    /// pending.
    pub(super) fn feed(&mut self, chunk: &[u8], last: bool) {
        let Sniffer {
            utf8,
            sjis,
            scratch,
        } = self;
        for slot in [utf8, sjis] {
            if let Some(decoder) = slot
                && !decodes_cleanly(decoder, chunk, last, scratch)
            {
                *slot = None;
            }
        }
    }

    /// Nothing more to learn: both decoders have failed.
    pub(super) fn settled(&self) -> bool {
        self.utf8.is_none() && self.sjis.is_none()
    }

    pub(super) fn verdict(&self) -> Detected {
        if self.utf8.is_some() || self.sjis.is_none() {
            PLAIN_UTF8
        } else {
            SJIS
        }
    }
}

pub(super) fn decodes_cleanly(
    decoder: &mut encoding_rs::Decoder,
    mut src: &[u8],
    last: bool,
    scratch: &mut [u8],
) -> bool {
    loop {
        let (result, read, _) = decoder.decode_to_utf8_without_replacement(src, scratch, last);
        match result {
            DecoderResult::InputEmpty => return true,
            DecoderResult::Malformed(..) => return false,
            DecoderResult::OutputFull => {
                if read == 0 {
                    // Cannot happen with a 16 KiB scratch buffer; bail out rather than spin.
                    return false;
                }
                src = src.get(read..).unwrap_or_default();
            }
        }
    }
}

pub(super) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
