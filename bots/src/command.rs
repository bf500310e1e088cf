//! Parsing a command message (docs/BOTS.md): `/name`, optionally
//! `/name@botname`, then arguments separated by white space, where an
//! argument in double quotes may hold white space (`\"` and `\\` escape
//! inside quotes). Pure: text in, [`Invocation`] or [`CommandError`] out.

/// Longest command name, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Most arguments a command may carry.
pub const MAX_ARGS: usize = 64;

/// A parsed command message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The command's name, lowercase, without the slash (`"remind"`).
    pub name: String,
    /// The arguments, unquoted.
    pub args: Vec<String>,
    /// Everything after the name (and the `@botname`), trimmed: for
    /// commands that take free text.
    pub rest: String,
}

/// Why a text is not a command this bot should run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The text does not start with `/`: an ordinary message.
    #[error("not a command")]
    NotACommand,
    /// `/name@other`: a command for another bot in the same group; ignore it.
    #[error("a command for another bot")]
    ForAnotherBot,
    /// The name is empty, too long or has characters other than ASCII
    /// letters, digits and `_`.
    #[error("a command name is 1 to 32 letters, digits or _")]
    BadName,
    /// A double quote was opened and never closed.
    #[error("a quoted argument is not closed")]
    UnterminatedQuote,
    /// More than [`MAX_ARGS`] arguments.
    #[error("more than {MAX_ARGS} arguments")]
    TooManyArguments,
}

/// Parses `text` as a command addressed to the bot `bot_username`
/// (a `/name@bot_username` suffix is accepted, case-insensitively).
///
/// # Errors
/// [`CommandError`]: `NotACommand` and `ForAnotherBot` mean "not for us",
/// the others that the user mistyped a command.
pub fn parse(text: &str, bot_username: &str) -> Result<Invocation, CommandError> {
    let body = text
        .trim_start()
        .strip_prefix('/')
        .ok_or(CommandError::NotACommand)?;
    let head_end = body.find(char::is_whitespace).unwrap_or(body.len());
    let (head, tail) = body.split_at(head_end);
    let (name, target) = match head.split_once('@') {
        Some((name, target)) => (name, Some(target)),
        None => (head, None),
    };
    if let Some(target) = target
        && !target.eq_ignore_ascii_case(bot_username)
    {
        return Err(CommandError::ForAnotherBot);
    }
    if !is_valid_name(name) {
        return Err(CommandError::BadName);
    }
    let rest = tail.trim().to_owned();
    let args = split_args(&rest)?;
    Ok(Invocation {
        name: name.to_ascii_lowercase(),
        args,
        rest,
    })
}

/// Whether `name` may name a command: 1 to [`MAX_NAME_LEN`] ASCII letters,
/// digits or `_`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits `text` into arguments: runs of non-white-space, or double-quoted
/// strings with `\"` and `\\` escapes.
fn split_args(text: &str) -> Result<Vec<String>, CommandError> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(first) = chars.next() else {
            return Ok(args);
        };
        if args.len() == MAX_ARGS {
            return Err(CommandError::TooManyArguments);
        }
        let mut arg = String::new();
        if first == '"' {
            loop {
                match chars.next() {
                    None => return Err(CommandError::UnterminatedQuote),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\')) => arg.push(c),
                        Some(c) => {
                            arg.push('\\');
                            arg.push(c);
                        }
                        None => return Err(CommandError::UnterminatedQuote),
                    },
                    Some(c) => arg.push(c),
                }
            }
        } else {
            arg.push(first);
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                arg.push(c);
            }
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Invocation {
        parse(text, "echobot").unwrap()
    }

    #[test]
    fn names_arguments_and_rest() {
        let i = ok("/Remind 10m  buy \"oat milk\" now");
        assert_eq!(i.name, "remind");
        assert_eq!(i.args, ["10m", "buy", "oat milk", "now"]);
        assert_eq!(i.rest, "10m  buy \"oat milk\" now");
        assert_eq!(ok("/start").args, Vec::<String>::new());
        assert_eq!(ok("  /help\n").name, "help");
        assert_eq!(ok(r#"/say "a \"b\" \\ c""#).args, [r#"a "b" \ c"#]);
        assert_eq!(ok(r#"/say "a\n""#).args, [r"a\n"]);
        assert_eq!(ok("/say \"\"").args, [""]);
    }

    #[test]
    fn addressed_commands_are_ours_only_when_they_name_us() {
        assert_eq!(ok("/help@EchoBot").name, "help");
        assert_eq!(
            parse("/help@otherbot", "echobot"),
            Err(CommandError::ForAnotherBot)
        );
    }

    #[test]
    fn mistakes_are_typed() {
        assert_eq!(parse("hello", "b"), Err(CommandError::NotACommand));
        assert_eq!(parse("", "b"), Err(CommandError::NotACommand));
        assert_eq!(parse("/", "b"), Err(CommandError::BadName));
        assert_eq!(parse("/ x", "b"), Err(CommandError::BadName));
        assert_eq!(parse("/a-b", "b"), Err(CommandError::BadName));
        assert_eq!(parse("/é", "b"), Err(CommandError::BadName));
        assert_eq!(
            parse(&format!("/{}", "a".repeat(33)), "b"),
            Err(CommandError::BadName)
        );
        assert_eq!(
            parse("/say \"open", "b"),
            Err(CommandError::UnterminatedQuote)
        );
        assert_eq!(
            parse("/say \"open\\", "b"),
            Err(CommandError::UnterminatedQuote)
        );
        let many = format!("/x {}", "a ".repeat(65));
        assert_eq!(parse(&many, "b"), Err(CommandError::TooManyArguments));
        let enough = format!("/x {}", "a ".repeat(64));
        assert_eq!(parse(&enough, "b").unwrap().args.len(), 64);
    }
}
