//! Line-based questions on a console: the wizard and the menu ask through a [`Prompt`], which
//! tests drive with scripted input.

use std::io::{BufRead, Write};

/// The operator closed the console (end of input) or asked to abort.
#[derive(Debug, PartialEq, Eq)]
pub struct Aborted;

pub struct Prompt<'a> {
    input: &'a mut dyn BufRead,
    out: &'a mut dyn Write,
    /// Turns terminal echo on (true) or off (false), for passwords.
    echo: Box<dyn FnMut(bool) + 'a>,
}

impl<'a> Prompt<'a> {
    pub fn new(input: &'a mut dyn BufRead, out: &'a mut dyn Write) -> Prompt<'a> {
        Prompt {
            input,
            out,
            echo: Box::new(|_| {}),
        }
    }

    pub fn with_echo_control(mut self, echo: impl FnMut(bool) + 'a) -> Prompt<'a> {
        self.echo = Box::new(echo);
        self
    }

    /// Writes text as is.
    pub fn say(&mut self, text: &str) {
        let _ = self.out.write_all(text.replace('\n', "\r\n").as_bytes());
        let _ = self.out.flush();
    }

    pub fn sayln(&mut self, text: &str) {
        self.say(text);
        self.say("\n");
    }

    /// One line of input, without its line ending.
    pub fn line(&mut self) -> Result<String, Aborted> {
        let mut s = String::new();
        match self.input.read_line(&mut s) {
            Ok(0) | Err(_) => Err(Aborted),
            Ok(_) => Ok(s.trim_end_matches(['\r', '\n']).to_owned()),
        }
    }

    /// Asks until `parse` accepts the answer. An empty answer takes `default` when there is
    /// one. A refused answer shows parse's message and the question again.
    pub fn ask<T>(
        &mut self,
        question: &str,
        default: Option<&str>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, Aborted> {
        loop {
            match default {
                Some(d) if !d.is_empty() => self.say(&format!("{question} [{d}]: ")),
                _ => self.say(&format!("{question}: ")),
            }
            let answer = self.line()?;
            let answer = answer.trim();
            let answer = match (answer.is_empty(), default) {
                (true, Some(d)) => d,
                _ => answer,
            };
            match parse(answer) {
                Ok(v) => return Ok(v),
                Err(message) => self.sayln(&format!("  ! {message}")),
            }
        }
    }

    /// Reads a line with echo off (on a terminal).
    pub fn secret(&mut self, question: &str) -> Result<String, Aborted> {
        self.say(&format!("{question}: "));
        (self.echo)(false);
        let line = self.line();
        (self.echo)(true);
        self.say("\n");
        line
    }

    /// yes/no.
    pub fn confirm(&mut self, question: &str, default: bool) -> Result<bool, Aborted> {
        let d = if default { "yes" } else { "no" };
        self.ask(question, Some(d), |s| {
            match s.to_ascii_lowercase().as_str() {
                "y" | "yes" => Ok(true),
                "n" | "no" => Ok(false),
                _ => Err("answer yes or no".into()),
            }
        })
    }
}
