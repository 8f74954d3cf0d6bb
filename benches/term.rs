//! Terminal pane figures, printed as plain lines:
//! - throughput of dense coloured output (every word a different SGR colour, 256-colour and
//!   RGB) through `Emulator::feed` at 200x50, with one `snapshot()` and one `TermView`
//!   render per 64 KiB chunk, as the SSH session and the UI would do it;
//! - the same for plain text, and the cost of one snapshot and one render on their own.
//!
//! `cargo bench --bench term` (`LEGION_BENCH_TERM_MB` changes the volume, default 16)

use std::time::{Duration, Instant};

use legion::views::term::{Emulator, TermView};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::widgets::Widget;

const ROWS: u16 = 50;
const COLS: u16 = 200;
const CHUNK: usize = 64 * 1024;

/// `total` bytes of lines like `ls --color` or a compiler would print, denser in escapes.
fn coloured_output(total: usize) -> Vec<u8> {
    let words = [
        "legion", "node-042", "running", "界面", "fsn1", "ready", "αβγ", "ok",
    ];
    let mut out = Vec::with_capacity(total + 256);
    let mut i = 0usize;
    while out.len() < total {
        for w in 0..12 {
            let word = words[(i + w) % words.len()];
            let seq = match (i + w) % 4 {
                0 => format!("\x1b[38;5;{}m{word}\x1b[0m ", (i + w) % 256),
                1 => format!("\x1b[1;3{}m{word}\x1b[22;39m ", (i + w) % 8),
                2 => format!(
                    "\x1b[38;2;{};{};{}m{word}\x1b[m ",
                    i % 256,
                    w * 20,
                    255 - i % 256
                ),
                _ => format!("\x1b[4;48;5;{}m{word}\x1b[24;49m ", 16 + (i + w) % 216),
            };
            out.extend_from_slice(seq.as_bytes());
        }
        out.extend_from_slice(format!("{i:>8}\r\n").as_bytes());
        i += 1;
    }
    out
}

fn plain_output(total: usize) -> Vec<u8> {
    let line = "the quick brown fox jumps over the lazy dog 0123456789 ".repeat(3);
    let mut out = Vec::with_capacity(total + line.len());
    while out.len() < total {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Feed `data` in 64 KiB chunks, snapshot and render after each; returns (elapsed, frames).
fn run(data: &[u8]) -> (Duration, usize) {
    let mut emulator = Emulator::new(ROWS, COLS, 10_000);
    let mut buf = Buffer::empty(Rect::new(0, 0, COLS, ROWS));
    let start = Instant::now();
    let mut frames = 0;
    for chunk in data.chunks(CHUNK) {
        emulator.feed(chunk);
        let frame = emulator.snapshot();
        TermView::new(&frame).render(buf.area, &mut buf);
        frames += 1;
    }
    (start.elapsed(), frames)
}

fn report(name: &str, data: &[u8]) {
    // One warm-up pass over a slice, then the timed pass.
    let _ = run(&data[..data.len().min(4 * CHUNK)]);
    let (took, frames) = run(data);
    let mb = data.len() as f64 / (1024.0 * 1024.0);
    println!(
        "{name}: {mb:.0} MiB in {:.2} s = {:.1} MiB/s at {COLS}x{ROWS} ({frames} snapshot+render, one per 64 KiB)",
        took.as_secs_f64(),
        mb / took.as_secs_f64(),
    );
}

fn bench_frame() {
    let mut emulator = Emulator::new(ROWS, COLS, 0);
    emulator.feed(&coloured_output(64 * 1024));
    let mut buf = Buffer::empty(Rect::new(0, 0, COLS, ROWS));
    let n = 2000;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(emulator.snapshot());
    }
    let snap = start.elapsed() / n;
    let frame = emulator.snapshot();
    let start = Instant::now();
    for _ in 0..n {
        TermView::new(&frame).render(buf.area, &mut buf);
        std::hint::black_box(&buf);
    }
    let render = start.elapsed() / n;
    println!("one {COLS}x{ROWS} frame: snapshot {snap:?}, render {render:?}");
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and only
    // checks that this builds and starts.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mb: usize = std::env::var("LEGION_BENCH_TERM_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    report("coloured output", &coloured_output(mb << 20));
    report("plain output", &plain_output(mb << 20));
    bench_frame();
}
