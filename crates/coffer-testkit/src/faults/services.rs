//! A RabbitMQ node and a MariaDB server of one test's own, which it may stop and start again.
//!
//! Both run from the Debian packages `scripts/stack` installs, as child processes with their
//! data under a temporary directory (kept across restarts, removed on drop): RabbitMQ as a node
//! of its own name and ports beside the shared one, MariaDB with `--skip-grant-tables` (any
//! user logs in; the suite tests restarts, not grants).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A free loopback port (bound, then released: another process could take it meanwhile, which
/// the start of the service would then report).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn temp_dir(label: &str) -> anyhow::Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("coffer-{label}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Waits until `ready` holds, or fails with the tail of `log`.
fn wait_until(
    what: &str,
    timeout: Duration,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            bail!(
                "{what} did not start within {timeout:?}; log tail:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// A RabbitMQ node of its own.
pub struct PrivateRabbit {
    dir: PathBuf,
    node: String,
    port: u16,
    dist_port: u16,
    child: Option<Child>,
}

impl PrivateRabbit {
    /// Starts a node; returns once it accepts AMQP connections.
    pub fn start() -> anyhow::Result<Self> {
        let dir = temp_dir("rabbit")?;
        let port = free_port()?;
        let mut rabbit = PrivateRabbit {
            node: format!("coffer-fault-{port}@localhost"),
            dist_port: free_port()?,
            dir,
            port,
            child: None,
        };
        rabbit.up()?;
        Ok(rabbit)
    }

    /// `amqp://guest:guest@127.0.0.1:{port}/%2f`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn up(&mut self) -> anyhow::Result<()> {
        let d = &self.dir;
        let log = d.join("server.log");
        let child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .current_dir(d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()
            .context("starting rabbitmq-server (scripts/stack installs it)")?;
        self.child = Some(child);
        let port = self.port;
        wait_until("rabbitmq", Duration::from_secs(90), &log, || {
            port_open(port)
        })
    }

    /// Stops the node (`rabbitmqctl stop`: a clean shutdown, queues on disk).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let status = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if let Some(mut child) = self.child.take() {
            if !status.success() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        Ok(())
    }

    /// Stops and starts the node again, with its queues.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.up()
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A MariaDB server of its own.
pub struct PrivateMariadb {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateMariadb {
    /// Initialises a data directory and starts the server; returns once it answers.
    pub fn start() -> anyhow::Result<Self> {
        let dir = temp_dir("mariadb")?;
        let out = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", dir.join("data").display()))
            .output()
            .context("mariadb-install-db (scripts/stack installs mariadb-server)")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut db = PrivateMariadb {
            dir,
            port: free_port()?,
            child: None,
        };
        db.up()?;
        Ok(db)
    }

    /// `mysql://coffer:coffer@127.0.0.1:{port}/coffer` (any credentials pass).
    pub fn database_url(&self) -> String {
        format!("mysql://coffer:coffer@127.0.0.1:{}/coffer", self.port)
    }

    fn up(&mut self) -> anyhow::Result<()> {
        let d = &self.dir;
        let log = d.join("error.log");
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                "--max-connections=500",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mariadbd")?;
        self.child = Some(child);
        let port = self.port;
        wait_until("mariadb", Duration::from_secs(60), &log, || port_open(port))?;
        let status = Command::new("mariadb")
            .args(["--protocol=tcp", "-h127.0.0.1", "-ucoffer"])
            .arg(format!("-P{port}"))
            .args(["-e", "CREATE DATABASE IF NOT EXISTS coffer"])
            .status()?;
        anyhow::ensure!(status.success(), "could not create the coffer database");
        Ok(())
    }

    /// Stops the server: killed outright (SIGKILL), as a crash would, when `crash`; else shut
    /// down cleanly (SIGTERM).
    pub fn stop(&mut self, crash: bool) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let signal = if crash { "-KILL" } else { "-TERM" };
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops (crash or clean) and starts the server again, with its data.
    pub fn restart(&mut self, crash: bool) -> anyhow::Result<()> {
        self.stop(crash)?;
        self.up()
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        let _ = self.stop(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
