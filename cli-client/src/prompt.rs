//! Asking the user: passwords (hidden on a terminal, or from
//! `MICROBOT_PASSWORD`) and codes. When standard input is not a terminal,
//! answers are read one line each from it, so scripts and tests can pipe
//! them in. Prompts go to standard error; standard output stays data.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use zeroize::Zeroizing;

use crate::error::CliError;

/// Environment variable holding the account password.
pub const PASSWORD_ENV: &str = "MICROBOT_PASSWORD";

/// Whether standard input is an interactive terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// The account password: `MICROBOT_PASSWORD`, else asked for.
pub fn password(prompt: &str) -> Result<Zeroizing<String>, CliError> {
    if let Ok(password) = std::env::var(PASSWORD_ENV)
        && !password.is_empty()
    {
        return Ok(Zeroizing::new(password));
    }
    let answer = if interactive() {
        Zeroizing::new(
            rpassword::prompt_password(prompt)
                .map_err(|e| CliError::io("reading the password", e))?,
        )
    } else {
        line(prompt)?.ok_or_else(|| {
            CliError::Input(format!(
                "no password: set {PASSWORD_ENV} or write it on standard input"
            ))
        })?
    };
    if answer.is_empty() {
        return Err(CliError::Input("empty password".into()));
    }
    Ok(answer)
}

/// Shows `prompt` (on a terminal) and reads one line (without its line
/// end); `None` at the end of input.
pub fn line(prompt: &str) -> Result<Option<Zeroizing<String>>, CliError> {
    let mut err = std::io::stderr();
    let shown = interactive();
    if shown {
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
    }
    let mut buf = Zeroizing::new(String::new());
    let read = std::io::stdin()
        .lock()
        .read_line(&mut buf)
        .map_err(|e| CliError::io("reading standard input", e))?;
    if read == 0 {
        if shown {
            let _ = writeln!(err);
        }
        return Ok(None);
    }
    let trimmed = buf.trim_end_matches(['\r', '\n']);
    Ok(Some(Zeroizing::new(trimmed.to_owned())))
}

/// Reads a TOTP code (digits, spaces ignored); `None` at the end of input.
pub fn code(prompt: &str) -> Result<Option<String>, CliError> {
    Ok(line(prompt)?.map(|answer| answer.chars().filter(|c| !c.is_whitespace()).collect()))
}
