//! Asking the person at the terminal before something that cannot be undone.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};

/// Refuses to `action` (e.g. `delete app web`) when stdin is not a terminal: there is no one
/// to ask, and waiting for an answer that never comes would hang a script.
pub fn require_terminal(action: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "will not {action} without a confirmation, and the input is not a terminal to ask \
             on; pass --yes to go ahead without asking"
        );
    }
    Ok(())
}

/// Says `warning` on stderr and asks for `expected` to be typed back on stdin; anything else
/// refuses to `action`.
pub fn typed_back(action: &str, warning: &str, expected: &str) -> anyhow::Result<()> {
    let confirmed = ask(
        warning,
        expected,
        &mut std::io::stdin().lock(),
        &mut std::io::stderr(),
    )
    .context("cannot read the confirmation")?;
    if !confirmed {
        bail!("did not {action}: the answer was not {expected}");
    }
    Ok(())
}

fn ask(
    warning: &str,
    expected: &str,
    input: &mut impl BufRead,
    prompt: &mut impl Write,
) -> std::io::Result<bool> {
    write!(prompt, "{warning}\nType {expected} to confirm: ")?;
    prompt.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    Ok(line.trim() == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_expected_answer_confirms() {
        let mut prompt = Vec::new();
        assert!(ask("Gone for good.", "web", &mut &b"web\n"[..], &mut prompt).unwrap());
        assert_eq!(
            String::from_utf8(prompt).unwrap(),
            "Gone for good.\nType web to confirm: "
        );
        for answer in [&b"y\n"[..], b"webb\n", b"", b"\n"] {
            assert!(!ask("", "web", &mut &answer[..], &mut Vec::new()).unwrap());
        }
    }
}
