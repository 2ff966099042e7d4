//! Asking the terminal which image protocol it speaks and how large a cell is, with a
//! deadline kept by poll(2) on stdin. ratatui-image 10's own query reads stdin on a
//! thread that stays blocked when the terminal never answers (inside tmux, whose
//! passthrough is off by default, nothing answers it), and that thread then takes the
//! user's first key. Here nothing is left reading once the query returns, and inside
//! tmux a status request tmux answers itself ends the wait.

use std::io::Write;
use std::time::{Duration, Instant};

use ratatui_image::picker::cap_parser::{Parser, QueryStdioOptions, Response};
use ratatui_image::picker::{Picker, ProtocolType};

/// How long the terminal has to answer.
const ANSWER_TIME: Duration = Duration::from_millis(1500);
/// Inside tmux, how long the outer terminal has to answer after tmux has.
const OUTER_ANSWER_TIME: Duration = Duration::from_millis(150);

/// The picker for this terminal (half-blocks when it says nothing useful). Call with
/// the terminal in raw mode and before anything else reads stdin.
pub(crate) fn query_picker() -> Picker {
    let in_tmux = std::env::var_os("TMUX").is_some_and(|v| !v.is_empty());
    let mut query = Parser::query(in_tmux, QueryStdioOptions::default());
    if in_tmux {
        // Outside the passthrough: tmux answers this one itself.
        query.push_str("\x1b[5n");
    }
    let mut stdout = std::io::stdout();
    if stdout
        .write_all(query.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return Picker::halfblocks();
    }
    let responses = read_answers(if in_tmux { 2 } else { 1 });
    picker_from(&responses)
}

/// The terminal's answers, until `statuses` status reports arrived or time ran out.
fn read_answers(statuses: usize) -> Vec<Response> {
    let mut parser = Parser::new();
    let mut responses = Vec::new();
    let mut deadline = Instant::now() + ANSWER_TIME;
    let mut seen = 0;
    while seen < statuses {
        let Some(byte) = read_byte_before(deadline) else {
            break;
        };
        for response in parser.push(char::from(byte)) {
            if matches!(response, Response::Status) {
                seen += 1;
                deadline = deadline.min(Instant::now() + OUTER_ANSWER_TIME);
            } else {
                responses.push(response);
            }
        }
    }
    responses
}

/// One byte of stdin, when one arrives before `deadline`. Read from the descriptor
/// itself, a byte at a time: std's buffered stdin would keep bytes (keys) past the
/// answer from the workbench's input reader.
fn read_byte_before(deadline: Instant) -> Option<u8> {
    let left = deadline.checked_duration_since(Instant::now())?;
    let mut poll = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = left.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, its count, a timeout.
    if unsafe { libc::poll(&mut poll, 1, millis) } != 1 {
        return None;
    }
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into a one-byte buffer.
    let read = unsafe { libc::read(libc::STDIN_FILENO, (&mut byte as *mut u8).cast(), 1) };
    (read == 1).then_some(byte)
}

/// Kitty before Sixel, the cell size the terminal reported (else its window size in
/// pixels over its cells), else half-blocks as ratatui-image chooses them.
fn picker_from(responses: &[Response]) -> Picker {
    let protocol = if responses.iter().any(|r| matches!(r, Response::Kitty)) {
        Some(ProtocolType::Kitty)
    } else if responses.iter().any(|r| matches!(r, Response::Sixel)) {
        Some(ProtocolType::Sixel)
    } else {
        None
    };
    let cell = responses
        .iter()
        .find_map(|r| match r {
            Response::CellSize(Some(size)) => Some(*size),
            _ => None,
        })
        .or_else(cell_from_window);
    match (protocol, cell) {
        (Some(protocol), Some(cell)) => {
            // Deprecated upstream in favour of its own query, the one avoided here.
            #[allow(deprecated)]
            let mut picker = Picker::from_fontsize(cell);
            picker.set_protocol_type(protocol);
            picker
        }
        _ => Picker::halfblocks(),
    }
}

/// The cell size from the window's pixel size over its cells, where the terminal
/// reports pixels.
fn cell_from_window() -> Option<(u16, u16)> {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize it is given.
    if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } != 0 {
        return None;
    }
    let cells = (size.ws_col, size.ws_row);
    if size.ws_xpixel == 0 || size.ws_ypixel == 0 || cells.0 == 0 || cells.1 == 0 {
        return None;
    }
    Some((size.ws_xpixel / cells.0, size.ws_ypixel / cells.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kitty_wins_over_sixel_and_no_protocol_is_half_blocks() {
        let both = [
            Response::Sixel,
            Response::Kitty,
            Response::CellSize(Some((9, 18))),
        ];
        let picker = picker_from(&both);
        assert_eq!(picker.protocol_type(), ProtocolType::Kitty);
        assert_eq!(picker.font_size(), (9, 18));
        let sixel = picker_from(&[Response::Sixel, Response::CellSize(Some((8, 16)))]);
        assert_eq!(sixel.protocol_type(), ProtocolType::Sixel);
        let nothing = picker_from(&[Response::RectangularOps]);
        assert_eq!(nothing.protocol_type(), ProtocolType::Halfblocks);
    }
}
