//! The console menu, once the box is set up: the same settings as the wizard, a status view,
//! the log, the admin password, a support shell, reboot and factory reset. It asks for the
//! admin password first. Actions that touch the system go through [`System`], so tests can
//! drive the menu with scripted input.

use super::password;
use super::prompt::{Aborted, Prompt};
use super::settings::Appliance;
use super::wizard::{self, Answers, Context};

/// What the menu does to the box.
pub trait System {
    /// The admin password's hash, if one is set.
    fn password_hash(&self) -> Option<String>;
    fn status(&self) -> String;
    fn log_tail(&self, lines: usize) -> Vec<String>;
    fn wizard_context(&self) -> Context;
    /// Writes confirmed answers and applies them; returns the problems met.
    fn commit(&mut self, answers: &Answers) -> Vec<String>;
    fn set_password(&mut self, password: &str) -> Result<(), String>;
    fn shell(&mut self);
    fn reboot(&mut self);
    fn factory_reset(&mut self) -> Result<(), String>;
    fn note(&mut self, message: &str);
    /// Waits after a failed login (a pause slows guessing).
    fn pause_after_failed_login(&mut self) {}
    fn settings(&self) -> Option<Appliance>;
}

/// Runs one session: login, then the menu until the operator logs out.
pub fn run(p: &mut Prompt<'_>, sys: &mut dyn System) -> Result<(), Aborted> {
    if !login(p, sys)? {
        return Ok(());
    }
    loop {
        let name = sys
            .settings()
            .map(|a| a.hostname)
            .unwrap_or_else(|| "tandem".into());
        p.sayln(&format!("\n{name} — Tandem console"));
        p.sayln("  1) status");
        p.sayln("  2) log");
        p.sayln("  3) network, HA and peer settings");
        p.sayln("  4) admin password");
        p.sayln("  5) support shell");
        p.sayln("  6) reboot");
        p.sayln("  7) factory reset");
        p.sayln("  0) log out");
        let choice = p.ask("Choice", None, |s| match s.trim() {
            c @ ("0" | "1" | "2" | "3" | "4" | "5" | "6" | "7") => Ok(c.to_owned()),
            _ => Err("choose 0 to 7".into()),
        })?;
        match choice.as_str() {
            "1" => {
                let s = sys.status();
                p.sayln(&s);
            }
            "2" => {
                let n = p.ask("How many lines", Some("40"), |s| {
                    s.parse::<usize>()
                        .map_err(|_| "a number, e.g. 40".to_owned())
                })?;
                for line in sys.log_tail(n) {
                    p.sayln(&line);
                }
            }
            "3" => {
                let ctx = sys.wizard_context();
                if let Some(answers) = wizard::run(p, &ctx)? {
                    let problems = sys.commit(&answers);
                    if problems.is_empty() {
                        p.sayln("Written and applied.");
                    } else {
                        for m in problems {
                            p.sayln(&format!("  ! {m}"));
                        }
                    }
                }
            }
            "4" => change_password(p, sys)?,
            "5" => {
                p.sayln("Support shell: `exit` returns to the menu. Commands: tandemctl, ip, nft, dmesg, …");
                sys.note("support shell opened");
                sys.shell();
                sys.note("support shell closed");
            }
            "6" => {
                if p.confirm("Reboot now?", false)? {
                    sys.note("reboot requested on the console");
                    sys.reboot();
                    return Ok(());
                }
            }
            "7" => {
                p.sayln("Factory reset erases every setting, config version, key and password on this box,");
                p.sayln("then reboots into the first-boot setup. The firmware stays.");
                let typed = p.ask(
                    "Type RESET to confirm, anything else to cancel",
                    None,
                    |s| Ok(s.to_owned()),
                )?;
                if typed == "RESET" {
                    sys.note("factory reset requested on the console");
                    match sys.factory_reset() {
                        Ok(()) => {
                            p.sayln("Erased. Rebooting.");
                            sys.reboot();
                            return Ok(());
                        }
                        Err(e) => p.sayln(&format!("  ! factory reset failed: {e}")),
                    }
                } else {
                    p.sayln("Cancelled.");
                }
            }
            _ => return Ok(()),
        }
    }
}

fn login(p: &mut Prompt<'_>, sys: &mut dyn System) -> Result<bool, Aborted> {
    let Some(hash) = sys.password_hash() else {
        p.sayln("No admin password is set: set one now.");
        change_password(p, sys)?;
        return Ok(sys.password_hash().is_some());
    };
    for _ in 0..3 {
        let pw = p.secret("Admin password")?;
        if password::verify(&pw, &hash) {
            sys.note("console login");
            return Ok(true);
        }
        p.sayln("  ! wrong password");
        sys.note("console login failed");
        sys.pause_after_failed_login();
    }
    Ok(false)
}

fn change_password(p: &mut Prompt<'_>, sys: &mut dyn System) -> Result<(), Aborted> {
    let host = sys.settings().map(|a| a.hostname).unwrap_or_default();
    loop {
        let first = p.secret("New admin password (empty: cancel)")?;
        if first.is_empty() {
            p.sayln("Unchanged.");
            return Ok(());
        }
        if let Err(m) = password::check_policy(&first, &host) {
            p.sayln(&format!("  ! {m}"));
            continue;
        }
        if p.secret("Again")? != first {
            p.sayln("  ! the two entries differ; once more");
            continue;
        }
        match sys.set_password(&first) {
            Ok(()) => p.sayln("Admin password changed."),
            Err(e) => p.sayln(&format!("  ! {e}")),
        }
        return Ok(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::settings::tests::sample;
    use std::io::Cursor;

    #[derive(Default)]
    struct Fake {
        hash: Option<String>,
        committed: Vec<Answers>,
        reset: bool,
        rebooted: bool,
        shells: usize,
        notes: Vec<String>,
    }

    impl System for Fake {
        fn password_hash(&self) -> Option<String> {
            self.hash.clone()
        }
        fn status(&self) -> String {
            "slot A (confirmed)".into()
        }
        fn log_tail(&self, n: usize) -> Vec<String> {
            (0..n).map(|i| format!("log {i}")).collect()
        }
        fn wizard_context(&self) -> Context {
            Context {
                interfaces: vec!["eth0".into(), "eth1".into()],
                own_fingerprint: "00".repeat(32),
                current: Some(sample()),
            }
        }
        fn commit(&mut self, a: &Answers) -> Vec<String> {
            self.committed.push(a.clone());
            vec![]
        }
        fn set_password(&mut self, pw: &str) -> Result<(), String> {
            self.hash = Some(password::hash(pw).unwrap());
            Ok(())
        }
        fn shell(&mut self) {
            self.shells += 1;
        }
        fn reboot(&mut self) {
            self.rebooted = true;
        }
        fn factory_reset(&mut self) -> Result<(), String> {
            self.reset = true;
            Ok(())
        }
        fn note(&mut self, m: &str) {
            self.notes.push(m.into());
        }
        fn settings(&self) -> Option<Appliance> {
            Some(sample())
        }
    }

    fn drive(sys: &mut Fake, lines: &[&str]) -> String {
        let mut input = Cursor::new(lines.join("\n") + "\n");
        let mut out = Vec::new();
        {
            let mut p = Prompt::new(&mut input, &mut out);
            let _ = run(&mut p, sys);
        }
        String::from_utf8(out).unwrap()
    }

    fn with_password() -> Fake {
        Fake {
            hash: Some(password::hash("Rack-42-Blue").unwrap()),
            ..Fake::default()
        }
    }

    #[test]
    fn three_wrong_passwords_end_the_session() {
        let mut sys = with_password();
        let out = drive(&mut sys, &["a", "b", "c", "1"]);
        assert_eq!(out.matches("wrong password").count(), 3);
        assert!(!out.contains("1) status"));
        assert_eq!(sys.notes.iter().filter(|n| n.contains("failed")).count(), 3);
    }

    #[test]
    fn status_log_and_shell_after_login() {
        let mut sys = with_password();
        let out = drive(&mut sys, &["Rack-42-Blue", "1", "2", "3", "5", "0"]);
        assert!(out.contains("slot A (confirmed)"));
        assert!(out.contains("log 2") && !out.contains("log 3"));
        assert_eq!(sys.shells, 1);
        assert!(sys.notes.contains(&"support shell opened".to_owned()));
    }

    #[test]
    fn factory_reset_needs_the_word_reset() {
        let mut sys = with_password();
        drive(&mut sys, &["Rack-42-Blue", "7", "reset", "0"]);
        assert!(!sys.reset);
        drive(&mut sys, &["Rack-42-Blue", "7", "RESET"]);
        assert!(sys.reset && sys.rebooted);
    }

    #[test]
    fn settings_from_the_menu_go_through_the_wizard() {
        let mut sys = with_password();
        let mut lines = vec!["Rack-42-Blue", "3", "lb-c"];
        lines.extend(std::iter::repeat_n("", 11));
        lines.extend(["yes", "0"]);
        let out = drive(&mut sys, &lines);
        assert!(out.contains("Written and applied."), "{out}");
        assert_eq!(sys.committed[0].appliance.hostname, "lb-c");
        assert_eq!(sys.committed[0].password, None);
    }

    #[test]
    fn a_box_without_a_password_sets_one_first() {
        let mut sys = Fake::default();
        let out = drive(&mut sys, &["weak", "Rack-42-Blue", "Rack-42-Blue", "0"]);
        assert!(out.contains("too short"));
        assert!(sys.hash.is_some());
    }
}
