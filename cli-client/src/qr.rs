//! QR codes as text: two modules per character cell with the Unicode half
//! blocks, so a phone can scan the TOTP enrolment or a safety number
//! straight from the terminal. Not owned here: what is encoded.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

use crate::error::CliError;

/// `data` as a QR code for a terminal with a dark background (light
/// modules are drawn, dark ones are left blank), with its quiet zone.
pub fn render(data: &[u8]) -> Result<String, CliError> {
    let code = QrCode::with_error_correction_level(data, EcLevel::M)
        .map_err(|e| CliError::Other(format!("cannot draw the QR code: {e}")))?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_renders_as_a_square_of_half_blocks() {
        let text = render(b"otpauth://totp/Microbot:alice?secret=JBSWY3DPEHPK3PXP").unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let width = lines[0].chars().count();
        // Two modules per line: a square code is about half as tall as wide.
        assert!(lines.len() * 2 >= width && lines.len() * 2 <= width + 2);
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert!(
            text.chars()
                .all(|c| matches!(c, ' ' | '\n' | '\u{2580}' | '\u{2584}' | '\u{2588}'))
        );
    }
}
