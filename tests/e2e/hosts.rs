//! Three hosts on one machine: network namespaces joined by veth pairs, made by the test and
//! removed after (root is needed to make them). Host `db` runs PostgreSQL and llama.cpp's
//! OpenAI-compatible `llama-server` serving the real model; hosts `w0` and `w1` each run
//! `recgpt run --shard i/2` against both over their own link, with the results in PostgreSQL.
//! Worker `w1` is killed with SIGKILL mid-run and restarted; afterwards every selected user is
//! stored once (or recorded as failed once) and the set is the one a one-process run selects.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{model_file, model_turn};
use crate::job::{count, job_home, kill, kill_config, kill_reference, recgpt_via, text};

/// The hosts' links: worker `w{i}` is 10.231.{i+1}.2, and reaches `db` at 10.231.{i+1}.1.
const NET: &str = "10.231";
const PG_PORT: &str = "5432";
const LLM_PORT: &str = "8080";

/// The namespaces, the PostgreSQL cluster and the servers; all removed on drop.
struct Hosts {
    prefix: String,
    pg_bin: PathBuf,
    dir: tempfile::TempDir,
    llm: Option<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {} (the three-host test makes network namespaces: run it as root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(out.status.success(), "{c:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Hosts {
    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// `ip netns exec NS` for `host`.
    fn on(&self, host: &str) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(host)]
    }

    fn command(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]).arg(program);
        c
    }

    /// The namespaces and links, PostgreSQL and `llama-server` on `db`.
    fn start() -> Self {
        let pg_bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL in /usr/lib/postgresql (scripts/setup.sh postgres)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").is_file())
            .max()
            .expect("a PostgreSQL version with initdb");
        let dir = tempfile::Builder::new()
            .prefix("recgpt-hosts")
            .tempdir_in("/tmp")
            .unwrap();
        let mut hosts = Self {
            prefix: format!("rg{}", std::process::id()),
            pg_bin,
            dir,
            llm: None,
        };
        for host in ["db", "w0", "w1"] {
            ip(&["netns", "add", &hosts.ns(host)]);
            ip(&["-n", &hosts.ns(host), "link", "set", "lo", "up"]);
        }
        for i in 0..2 {
            let (worker, db) = (
                format!("{}w{i}", hosts.prefix),
                format!("{}d{i}", hosts.prefix),
            );
            let (ns_w, ns_db) = (hosts.ns(&format!("w{i}")), hosts.ns("db"));
            ip(&[
                "link", "add", &worker, "netns", &ns_w, "type", "veth", "peer", "name", &db,
                "netns", &ns_db,
            ]);
            let net = format!("{NET}.{}", i + 1);
            ip(&[
                "-n",
                &ns_db,
                "addr",
                "add",
                &format!("{net}.1/24"),
                "dev",
                &db,
            ]);
            ip(&[
                "-n",
                &ns_w,
                "addr",
                "add",
                &format!("{net}.2/24"),
                "dev",
                &worker,
            ]);
            ip(&["-n", &ns_db, "link", "set", &db, "up"]);
            ip(&["-n", &ns_w, "link", "set", &worker, "up"]);
        }
        hosts.start_postgres();
        hosts.start_llm();
        hosts
    }

    fn start_postgres(&self) {
        let dir = self.dir.path();
        ok(Command::new("chmod").arg("755").arg(dir));
        ok(Command::new("chown").arg("postgres:").arg(dir));
        let data = dir.join("data");
        ok(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.pg_bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]));
        // the workers log in over their links
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str(&format!("host all all {NET}.0.0/16 trust\n"));
        std::fs::write(&hba, rules).unwrap();
        let listen = format!("{NET}.1.1,{NET}.2.1,127.0.0.1");
        let options = format!("-h {listen} -p {PG_PORT} -k {} -F", dir.display());
        ok(self
            .command("db", "runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.pg_bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-o", &options, "start"]));
    }

    fn start_llm(&mut self) {
        let bin = crate::common::llama_server_bin();
        // two slots, one for each worker, as large as an in-process sequence
        self.llm = Some(
            self.command("db", &bin)
                .arg("--model")
                .arg(model_file())
                .args(["--host", "0.0.0.0", "--port", LLM_PORT])
                .args(["--ctx-size", "6144", "--parallel", "2", "--threads", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start llama-server"),
        );
        let started = Instant::now();
        let health = format!("http://{NET}.1.1:{LLM_PORT}/health");
        while !self
            .command("w0", "curl")
            .args(["-sf", "-o", "/dev/null", &health])
            .status()
            .unwrap()
            .success()
        {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "llama-server on host db not ready at {health}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `psql` on host db running `query`, rows unaligned.
    fn psql(&self, query: &str) -> Command {
        let mut c = self.command("db", self.pg_bin.join("psql"));
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            PG_PORT,
            "-U",
            "postgres",
            "-tAq",
            "-c",
            query,
        ]);
        c
    }

    /// One SQL query's rows (one column) on host db.
    fn sql(&self, query: &str) -> Vec<String> {
        let out = ok(&mut self.psql(query));
        out.lines().map(str::to_string).collect()
    }

    /// Users stored so far (0 until a worker has made the tables).
    fn stored_users(&self) -> u64 {
        let out = self.psql("SELECT COUNT(*) FROM users").output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// A worker's home: the shared inputs, its link's LLM and store URLs.
    fn worker_home(&self, i: usize) -> PathBuf {
        let net = format!("{NET}.{}", i + 1);
        let config = format!(
            "{}\n[llm.backend]\nkind = \"openai\"\nurl = \"http://{net}.1:{LLM_PORT}/v1\"\nconcurrency = 1\n",
            kill_config()
        );
        job_home(
            &config,
            Some(format!("postgres://postgres@{net}.1:{PG_PORT}/postgres")),
        )
    }

    /// `recgpt --json run --users 4 --shard i/2` on host `w{i}`.
    fn worker(&self, i: usize, home: &Path) -> Child {
        let on = self.on(&format!("w{i}"));
        let on: Vec<&str> = on.iter().map(String::as_str).collect();
        let shard = format!("{i}/2");
        recgpt_via(
            &on,
            home,
            &["--json", "run", "--users", "4", "--shard", &shard],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a worker")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if let Some(mut llm) = self.llm.take() {
            let _ = llm.kill();
            let _ = llm.wait();
        }
        let _ = self
            .command("db", "runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.pg_bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        for host in ["db", "w0", "w1"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(host)])
                .output();
        }
    }
}

fn summary(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "worker: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

#[test]
fn two_worker_hosts_share_one_database_host_through_a_kill() {
    let _turn = model_turn();
    // the users a one-process run selects (and how it ended), on this host's SQLite store
    let (reference, reference_failed) = kill_reference();
    let selected: BTreeSet<String> = reference.keys().chain(reference_failed).cloned().collect();

    let hosts = Hosts::start();
    let homes = [hosts.worker_home(0), hosts.worker_home(1)];
    let w0 = hosts.worker(0, &homes[0]);
    let mut w1 = hosts.worker(1, &homes[1]);
    // w1 dies once the first result is in the database (from either worker)
    let started = Instant::now();
    loop {
        if hosts.stored_users() > 0 {
            break;
        }
        assert!(
            w1.try_wait().unwrap().is_none(),
            "w1 ended before any result was stored"
        );
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "no result in 15 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        w1.try_wait().unwrap().is_none(),
        "w1 finished before it could be killed"
    );
    kill(&mut w1);
    let restarted = summary(hosts.worker(1, &homes[1]));
    let first = summary(w0);

    let selected_by_shards = count(&first, "selected") + count(&restarted, "selected");
    assert_eq!(
        selected_by_shards,
        selected.len() as u64,
        "{first} {restarted}"
    );
    let users: Vec<String> = hosts.sql(r#"SELECT "user" FROM users ORDER BY 1"#);
    let failed: Vec<String> = hosts.sql(r#"SELECT "user" FROM failures ORDER BY 1"#);
    let distinct: BTreeSet<String> = users.iter().chain(&failed).cloned().collect();
    assert_eq!(
        distinct.len(),
        users.len() + failed.len(),
        "a user both stored and failed: {users:?} {failed:?}"
    );
    assert_eq!(distinct, selected, "stored {users:?}, failed {failed:?}");
    // the restarted worker skipped what its killed run had stored
    assert_eq!(
        count(&restarted, "done")
            + count(&restarted, "failed")
            + count(&restarted, "skipped")
            + count(&restarted, "failed_before"),
        count(&restarted, "selected"),
        "{restarted}"
    );
}
