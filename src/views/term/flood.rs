//! Output floods: the plain lines at the start of a chunk of remote output that could not
//! be seen anyway, found without parsing them, so the emulator does not lay them out.
//!
//! A screen of `rows` rows with `history` rows of scrollback shows nothing of a line that
//! has more than `rows + history` scrolls after it. Plain lines (printable ASCII, CR, LF)
//! move nothing but the cursor and the scroll, so when a chunk starts with more than
//! `2 × rows + history` plain line ends, everything before the last `2 × rows + history`
//! of them is gone once they are fed: at most `rows - 1` of them move the cursor down to
//! the last row, every other one scrolls. What follows the cut is fed as it came, so the
//! screen, the history, the cursor and the attributes end exactly as if every byte had
//! been fed (the emulator's tests compare the two).
//!
//! Two conditions, checked by the caller: the parser is in its ground state (else the
//! first plain bytes might finish an escape sequence begun in the previous chunk; [`Seq`]
//! follows that), and the view is the live, primary screen with its whole height
//! scrolling. A remote that has set a scroll region and then writes a flood below it on
//! the primary screen is the one case this does not model (the rows below the region keep
//! only the last lines' characters either way).
//!
//! `seq 1 3000000` in a 200x50 pane spent three quarters of the pane's time laying out
//! rows that were thrown away a moment later (vt100 allocates, trims and frees a row per
//! scrolled line).

/// Where the remote's escape sequence stands after the bytes fed so far, as far as the
/// flood cut needs to know. Conservative: a state it cannot follow is never `Ground`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Seq {
    #[default]
    Ground,
    Esc,
    /// `ESC` and intermediate bytes, before the final byte.
    EscInter,
    Csi,
    /// Ends with BEL or ST.
    Osc,
    /// DCS, SOS, PM, APC: end with ST only.
    Str,
}

const ESC: u8 = 0x1b;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
const BEL: u8 = 0x07;

impl Seq {
    fn step(self, b: u8) -> Seq {
        match (b, self) {
            (ESC, _) => Seq::Esc,
            (CAN | SUB, _) => Seq::Ground,
            (_, Seq::Ground) => Seq::Ground,
            (b'[', Seq::Esc) => Seq::Csi,
            (b']', Seq::Esc) => Seq::Osc,
            (b'P' | b'X' | b'^' | b'_', Seq::Esc) => Seq::Str,
            (0x20..=0x2f, Seq::Esc) => Seq::EscInter,
            (0x30..=0x7e, Seq::Esc | Seq::EscInter) => Seq::Ground,
            (0x40..=0x7e, Seq::Csi) => Seq::Ground,
            (BEL, Seq::Osc) => Seq::Ground,
            (_, s) => s,
        }
    }

    /// The state after `bytes`. Only the bytes after the last ESC, CAN or SUB matter (they
    /// leave every state the same way), so a chunk without them is not scanned from the
    /// ground state.
    pub fn after(self, bytes: &[u8]) -> Seq {
        let (mut state, tail) = match bytes.iter().rposition(|&b| matches!(b, ESC | CAN | SUB)) {
            Some(i) => (Seq::Ground.step(bytes[i]), &bytes[i + 1..]),
            None => (self, bytes),
        };
        for &b in tail {
            if state == Seq::Ground {
                break;
            }
            state = state.step(b);
        }
        state
    }
}

/// How many bytes at the start of `bytes` can be dropped: those before the last `keep`
/// line ends of its plain prefix (0 when it has no more than `keep`).
pub fn cut(bytes: &[u8], keep: usize) -> usize {
    let plain = bytes
        .iter()
        .position(|&b| !matches!(b, 0x20..=0x7e | b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    let plain = &bytes[..plain];
    let ends = plain.iter().filter(|&&b| b == b'\n').count();
    if ends <= keep {
        return 0;
    }
    let mut drop = ends - keep;
    for (i, &b) in plain.iter().enumerate() {
        if b == b'\n' {
            drop -= 1;
            if drop == 0 {
                return i + 1;
            }
        }
    }
    0
}

/// Line ends that must follow a cut on a screen of `rows` with `history` rows kept.
pub fn keep(rows: u16, history: usize) -> usize {
    2 * usize::from(rows) + history
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_keeps_the_last_line_ends_of_the_plain_prefix() {
        assert_eq!(cut(b"a\r\nb\r\nc\r\n", 3), 0);
        assert_eq!(cut(b"a\r\nb\r\nc\r\n", 2), 3);
        assert_eq!(cut(b"a\r\nb\r\nc\r\n", 1), 6);
        assert_eq!(cut(b"a\r\nb\r\nc\r\nd", 0), 9);
        // The plain prefix ends at the first escape, tab or non-ASCII byte.
        assert_eq!(cut(b"a\r\nb\x1b[1m\r\nc\r\n", 0), 3);
        assert_eq!(cut(b"a\tb\r\nc\r\n", 0), 0);
        assert_eq!(cut("é\r\n".as_bytes(), 0), 0);
        assert_eq!(cut(b"", 0), 0);
    }

    #[test]
    fn the_sequence_state_follows_every_kind_of_sequence() {
        let g = Seq::Ground;
        assert_eq!(g.after(b"plain text\r\n"), Seq::Ground);
        assert_eq!(g.after(b"x\x1b"), Seq::Esc);
        assert_eq!(g.after(b"\x1b["), Seq::Csi);
        assert_eq!(g.after(b"\x1b[3"), Seq::Csi);
        assert_eq!(g.after(b"\x1b[31;1"), Seq::Csi);
        assert_eq!(g.after(b"\x1b[31m"), Seq::Ground);
        assert_eq!(g.after(b"\x1b[?1049h"), Seq::Ground);
        assert_eq!(g.after(b"\x1b]0;title"), Seq::Osc);
        assert_eq!(g.after(b"\x1b]0;title\x07"), Seq::Ground);
        assert_eq!(g.after(b"\x1b]0;title\x1b\\"), Seq::Ground);
        assert_eq!(g.after(b"\x1bPq#0;2;0;0;0\x07more"), Seq::Str);
        assert_eq!(g.after(b"\x1bPq\x1b\\"), Seq::Ground);
        assert_eq!(g.after(b"\x1b(B"), Seq::Ground);
        assert_eq!(g.after(b"\x1b("), Seq::EscInter);
        assert_eq!(g.after(b"\x1b[31\x18"), Seq::Ground);
        assert_eq!(g.after(b"\x1b]0;x\x1a"), Seq::Ground);
        // Carried across chunks: a sequence split anywhere.
        assert_eq!(Seq::Csi.after(b"1;2"), Seq::Csi);
        assert_eq!(Seq::Csi.after(b"1;2m plain\r\n"), Seq::Ground);
        assert_eq!(Seq::Osc.after(b"still the title"), Seq::Osc);
        assert_eq!(Seq::Esc.after(b"[1"), Seq::Csi);
    }

    /// A small xorshift generator: the streams below are random but repeatable.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Remote output: runs of plain lines (some longer than the screen), with colours,
    /// cursor moves, clears, titles, the alternate screen and CR overwrites between them.
    fn stream(rng: &mut Rng, lines: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..lines {
            match rng.below(250) {
                0 => out.extend_from_slice(b"\x1b[31m"),
                1 => out.extend_from_slice(b"\x1b[0m"),
                2 => out.extend_from_slice(b"\x1b[1;44m"),
                3 => out.extend_from_slice(b"\x1b[3;7H"),
                4 => out.extend_from_slice(b"\x1b[H\x1b[2J"),
                5 => out.extend_from_slice(b"\x1b]0;a title\x07"),
                6 => out.extend_from_slice(b"\x1b[?1049h alt \x1b[5;5H x \x1b[?1049l"),
                7 => out.extend_from_slice(b"over\r"),
                8 => out.extend_from_slice(b"\x1b[K"),
                _ => {}
            }
            // Most lines fit the 20 columns; a wrapped one scrolls more than once.
            let len = if rng.below(10) == 0 {
                rng.below(45)
            } else {
                rng.below(20)
            };
            for j in 0..len {
                out.push(b'a' + ((i as u64 + j) % 26) as u8);
            }
            out.extend_from_slice(if rng.below(5) == 0 { b"\n" } else { b"\r\n" });
        }
        out
    }

    /// Every screenful of the history and the live screen (with attributes and the
    /// cursor), through `at`: scroll to an offset, say what is shown.
    fn everything(history: usize, rows: u16, mut at: impl FnMut(usize) -> String) -> Vec<String> {
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            all.push(at(offset));
            if offset >= history {
                break;
            }
            offset = (offset + usize::from(rows)).min(history);
        }
        at(0);
        all
    }

    #[test]
    fn a_cut_flood_ends_exactly_as_the_whole_flood() {
        use crate::views::term::Emulator;
        let (rows, cols, history) = (6, 20, 25);
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let formatted =
            |s: &vt100::Screen| format!("{:?} {}", s.cursor_position(), s.contents_formatted());
        let mut cuts = 0;
        for round in 0..40 {
            let bytes = stream(&mut rng, 400 + round * 20);
            let dim = |n: u16| std::num::NonZeroU16::new(n).unwrap();
            let mut whole = vt100::Parser::new(dim(rows), dim(cols), history);
            let mut emu = Emulator::new(rows, cols, history);
            let mut at = 0;
            while at < bytes.len() {
                let n = (1 + rng.below(4000) as usize).min(bytes.len() - at);
                let chunk = &bytes[at..at + n];
                let cut = emu.flood_cut(chunk) > 0;
                emu.feed(chunk);
                whole.process(chunk);
                at += n;
                if !cut && at < bytes.len() {
                    continue;
                }
                // Right after a cut (and at the end), everything matches the whole feed.
                cuts += usize::from(cut);
                let got = everything(emu.scrollback_len(), rows, |o| {
                    emu.scroll_reset();
                    emu.scroll_up(o);
                    formatted(emu.screen())
                });
                let w_len = whole.screen().scrollback_len();
                let want = everything(w_len, rows, |o| {
                    whole.screen_mut().set_scrollback(o);
                    formatted(whole.screen())
                });
                assert_eq!(got, want, "round {round}, after byte {at}");
            }
        }
        assert!(cuts >= 10, "the streams exercise the cut ({cuts} cuts)");
    }
}
