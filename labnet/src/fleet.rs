//! The fleet's shared cloud: a NATS JetStream cluster (one `nats-server`
//! per namespace) on a bridge of its own, which gateways are wired to by a
//! veth each. A gateway's link can be cut and restored, and a server
//! killed and started again, to show what the fleet does then.
//!
//! ```text
//!   nats1 172.31.0.11   nats2 .12   nats3 .13      (JetStream, Raft)
//!         |               |           |
//!   [br-cloud in PREFIX-cloud] ---- gw1 .101 ---- gw2 .102 ---- ...
//! ```
//!
//! Each gateway gets a NATS user of its own whose permissions let it write
//! only its own site's (and gateway's) keys and subjects (`permissions`),
//! the way docs/fleet.md tells an operator to set them up.

use std::{
    fs,
    path::PathBuf,
    process::Child,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{netns, Lab, LabOptions, Netns};

pub const DECISIONS: &str = "sensor-decisions";
pub const GATEWAYS: &str = "sensor-gateways";
pub const INCIDENTS: &str = "SENSOR_INCIDENTS";
pub const FEEDS: &str = "SENSOR_FEEDS";

/// A NATS user of the fleet.
#[derive(Clone, Debug)]
pub struct FleetUser {
    pub name: String,
    pub password: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Creates the buckets (`sensorctl fleet init`): everything.
    Admin,
    /// A gateway of `site`; `fleet`: its site may decide for everyone.
    Gateway {
        site: String,
        gateway: String,
        fleet: bool,
    },
    /// The SOC: reads everything, writes nothing.
    ReadOnly,
}

/// The JetStream API calls a reader needs: stream info, its own
/// consumers, direct gets.
fn reader_api() -> Vec<String> {
    let mut allow = vec!["$JS.API.INFO".to_string()];
    for stream in [
        format!("KV_{DECISIONS}"),
        format!("KV_{GATEWAYS}"),
        INCIDENTS.to_string(),
        FEEDS.to_string(),
    ] {
        allow.extend([
            format!("$JS.API.STREAM.INFO.{stream}"),
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}.>"),
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
            format!("$JS.API.CONSUMER.INFO.{stream}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
        ]);
    }
    allow.push("$JS.API.STREAM.NAMES".into());
    allow.push("$JS.FC.>".into());
    allow.push("$JS.ACK.>".into());
    allow
}

impl FleetUser {
    /// The user's entry in the servers' `authorization` block.
    fn entry(&self) -> String {
        let quote = |list: &[String]| {
            list.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let publish = match &self.role {
            Role::Admin => {
                return format!("{{user: {:?}, password: {:?}}}", self.name, self.password)
            }
            Role::ReadOnly => reader_api(),
            Role::Gateway {
                site,
                gateway,
                fleet,
            } => {
                let mut allow = reader_api();
                allow.extend([
                    format!("$KV.{DECISIONS}.site.{site}.>"),
                    format!("$KV.{DECISIONS}.gateway.{site}.{gateway}.>"),
                    format!("$KV.{GATEWAYS}.{site}.{gateway}"),
                    format!("sensor.incidents.{site}.{gateway}.>"),
                    format!("sensor.feeds.site.{site}.>"),
                ]);
                if *fleet {
                    allow.push(format!("$KV.{DECISIONS}.fleet.{site}.>"));
                    allow.push(format!("sensor.feeds.fleet.{site}.>"));
                }
                allow
            }
        };
        format!(
            "{{user: {:?}, password: {:?}, permissions: {{publish: {{allow: [{}]}}, subscribe: {{allow: [\"_INBOX.>\"]}}}}}}",
            self.name,
            self.password,
            quote(&publish)
        )
    }
}

struct Node {
    name: String,
    netns: Netns,
    ip: String,
    child: Option<Child>,
}

pub struct Cloud {
    pub prefix: String,
    /// /run/PREFIX: the servers' configuration, stores and logs.
    pub dir: PathBuf,
    pub switch: Netns,
    nodes: Vec<Node>,
    users: Vec<FleetUser>,
}

/// The cloud's addresses: servers from .11, gateways from .101.
const NET: &str = "172.31.0";

impl Cloud {
    /// Starts `nodes` servers (1 or 3) clustered together, with `users`,
    /// and waits until JetStream answers on each.
    pub fn create(prefix: &str, nodes: usize, users: Vec<FleetUser>) -> Result<Cloud> {
        destroy(prefix);
        let dir = PathBuf::from("/run").join(prefix);
        fs::create_dir_all(dir.join("logs"))?;
        let switch = Netns::create(&format!("{prefix}-cloud"))?;
        switch.ip(&["link", "add", "br-cloud", "type", "bridge"])?;
        switch.ip(&["link", "set", "br-cloud", "up"])?;
        // The cloud's own address: the administrator's seat (`fleet init`).
        switch.ip(&["addr", "add", &format!("{NET}.1/24"), "dev", "br-cloud"])?;
        let mut cloud = Cloud {
            prefix: prefix.into(),
            dir,
            switch,
            nodes: Vec::new(),
            users,
        };
        for i in 0..nodes {
            let name = format!("nats{}", i + 1);
            let netns = Netns::create(&format!("{prefix}-{name}"))?;
            let ip = format!("{NET}.{}", 11 + i);
            cloud.wire(&netns, &name, &ip)?;
            cloud.nodes.push(Node {
                name,
                netns,
                ip,
                child: None,
            });
        }
        cloud.make_certificates()?;
        for i in 0..nodes {
            cloud.start_node(i)?;
        }
        cloud.wait_ready()?;
        Ok(cloud)
    }

    /// The CA the servers' certificate is signed by: what a gateway's
    /// `tls_ca_file` names.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls").join("ca.pem")
    }

    /// A CA of the cloud's own and one certificate for every server (its
    /// addresses as subject alternative names), made with openssl.
    fn make_certificates(&self) -> Result<()> {
        let tls = self.dir.join("tls");
        fs::create_dir_all(&tls)?;
        let path = |name: &str| tls.join(name).to_string_lossy().to_string();
        let openssl = |args: &[&str]| -> Result<()> {
            let out = std::process::Command::new("openssl").args(args).output()?;
            if !out.status.success() {
                bail!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(())
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=sensor fleet test CA",
        ];
        ca.extend(ec);
        let (ca_key, ca_pem) = (path("ca.key"), path("ca.pem"));
        ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
        openssl(&ca)?;
        let names: Vec<String> = self.nodes.iter().map(|n| format!("IP:{}", n.ip)).collect();
        fs::write(
            tls.join("server.ext"),
            format!(
                "subjectAltName = {}\nextendedKeyUsage = serverAuth\n",
                names.join(", ")
            ),
        )?;
        let (key, csr, pem) = (path("server.key"), path("server.csr"), path("server.pem"));
        let mut request = vec!["req", "-subj", "/CN=nats"];
        request.extend(ec);
        request.extend(["-keyout", &key, "-out", &csr]);
        openssl(&request)?;
        let ext = path("server.ext");
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ])
    }

    /// A veth from `ns` (as `fleet0`, address `ip`) to the cloud's bridge
    /// (as `port`).
    fn wire(&self, ns: &Netns, port: &str, ip: &str) -> Result<()> {
        self.switch.ip(&[
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "fleet0",
            "netns",
            ns.name(),
        ])?;
        self.switch
            .ip(&["link", "set", port, "master", "br-cloud"])?;
        self.switch.ip(&["link", "set", port, "up"])?;
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "fleet0"])?;
        ns.ip(&["link", "set", "fleet0", "up"])?;
        Ok(())
    }

    /// Wires a gateway's namespace to the cloud as gateway number `n`
    /// (1-based); returns its address there.
    pub fn attach(&self, gateway: &Netns, n: usize) -> Result<String> {
        let ip = format!("{NET}.{}", 100 + n);
        self.wire(gateway, &format!("gw{n}"), &ip)?;
        Ok(ip)
    }

    /// Cuts gateway `n`'s link to the cloud (its port on the bridge down).
    pub fn cut(&self, n: usize) -> Result<()> {
        self.switch
            .ip(&["link", "set", &format!("gw{n}"), "down"])?;
        Ok(())
    }

    pub fn restore(&self, n: usize) -> Result<()> {
        self.switch.ip(&["link", "set", &format!("gw{n}"), "up"])?;
        Ok(())
    }

    /// The servers' URLs, as `[fleet] servers` lists them: clients must
    /// speak TLS.
    pub fn servers(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("tls://{}:4222", n.ip))
            .collect()
    }

    fn config(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let routes: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.name != node.name)
            .map(|n| format!("\"nats-route://{}:6222\"", n.ip))
            .collect();
        let cluster = match routes.is_empty() {
            true => String::new(),
            false => format!(
                "cluster {{\n  name: sensor-fleet\n  listen: {ip}:6222\n  routes: [{}]\n}}\n",
                routes.join(", "),
                ip = node.ip
            ),
        };
        let users: Vec<String> = self.users.iter().map(FleetUser::entry).collect();
        let tls = self.dir.join("tls");
        format!(
            "server_name: {name}\nlisten: {ip}:4222\nhttp: {ip}:8222\n\
             tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n  timeout: 2\n}}\n\
             jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 256MB\n  max_file_store: 2GB\n}}\n\
             {cluster}authorization {{\n  users: [\n    {users}\n  ]\n}}\n",
            name = node.name,
            ip = node.ip,
            cert = tls.join("server.pem"),
            key = tls.join("server.key"),
            store = self.dir.join("store").join(&node.name),
            users = users.join(",\n    "),
        )
    }

    /// Starts server `i` (0-based), keeping its store: a restarted server
    /// catches up from the others.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let path = self.dir.join(format!("{}.conf", self.nodes[i].name));
        fs::write(&path, self.config(i))?;
        let log = self
            .dir
            .join("logs")
            .join(format!("{}.log", self.nodes[i].name));
        let child =
            self.nodes[i]
                .netns
                .spawn("nats-server", &["-c", &path.to_string_lossy()], &log)?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Kills server `i` at once (SIGKILL: a crash, not a shutdown).
    pub fn kill_node(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            // `ip netns exec` execs the server: the child is the server.
            child.kill().context("killing nats-server")?;
            child.wait()?;
        }
        Ok(())
    }

    /// Waits until every running server says JetStream is up and, in a
    /// cluster, has a meta leader.
    pub fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            loop {
                let url = format!("http://{}:8222/jsz", node.ip);
                let answer = node
                    .netns
                    .exec("curl", &["-sS", "-m", "2", &url])
                    .unwrap_or_default();
                let clustered = self.nodes.len() == 1 || answer.contains("\"leader\"");
                if answer.contains("\"config\"") && clustered {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} did not become ready; its log:\n{}",
                        node.name,
                        fs::read_to_string(
                            self.dir.join("logs").join(format!("{}.log", node.name))
                        )
                        .unwrap_or_default()
                    );
                }
                sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    /// A server's monitoring answer (`/varz`, `/jsz`), read from inside
    /// the cloud.
    pub fn monitor(&self, i: usize, path: &str) -> Result<String> {
        let url = format!("http://{}:8222{path}", self.nodes[i].ip);
        self.nodes[i].netns.exec("curl", &["-sS", "-m", "5", &url])
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        destroy(&self.prefix);
    }
}

/// Removes the cloud named `prefix`: its namespaces, servers and files.
pub fn destroy(prefix: &str) {
    for name in netns::list_with_prefix(&format!("{prefix}-")) {
        netns::delete(&name);
    }
    let _ = fs::remove_dir_all(PathBuf::from("/run").join(prefix));
}

/// A site of a fleet lab to build: its name, and whether it may decide for
/// the whole fleet (its NATS user may write fleet-wide keys, and its
/// `[fleet] publish` says so).
pub struct SiteSpec {
    pub name: &'static str,
    pub fleet_wide: bool,
}

/// The fleet lab's and the fleet tests' sites: city-a and city-c may
/// decide for the whole fleet, city-b only for itself.
pub const THREE_CITIES: [SiteSpec; 3] = [
    SiteSpec {
        name: "city-a",
        fleet_wide: true,
    },
    SiteSpec {
        name: "city-b",
        fleet_wide: false,
    },
    SiteSpec {
        name: "city-c",
        fleet_wide: true,
    },
];

/// A prefecture's shared cloud in small: the prefecture's own gateway
/// (`pref`, which decides for the whole fleet) and nine towns, each
/// deciding for itself only.
pub const TEN_GATEWAYS: [SiteSpec; 10] = {
    const fn town(name: &'static str) -> SiteSpec {
        SiteSpec {
            name,
            fleet_wide: false,
        }
    }
    [
        SiteSpec {
            name: "pref",
            fleet_wide: true,
        },
        town("town-1"),
        town("town-2"),
        town("town-3"),
        town("town-4"),
        town("town-5"),
        town("town-6"),
        town("town-7"),
        town("town-8"),
        town("town-9"),
    ]
};

/// One site of a fleet lab: its own lab (a gateway with its segments).
pub struct Site {
    pub name: String,
    pub lab: Lab,
}

/// Several sites, each a lab with its own gateway, sharing a three-node
/// NATS cluster: the fleet tests' and `cargo xtask lab --fleet`'s.
pub struct FleetLab {
    pub sites: Vec<Site>,
    /// Last, so the servers go after the gateways.
    pub cloud: Cloud,
}

/// Every site's one gateway is named so.
pub const GATEWAY: &str = "gw1";

/// The users: the administrator, the SOC (read-only), one per site.
fn fleet_users(sites: &[SiteSpec], secret: &str) -> Vec<FleetUser> {
    let password = |name: &str| format!("pw-{name}-{secret}");
    let mut users = vec![
        FleetUser {
            name: "admin".into(),
            password: password("admin"),
            role: Role::Admin,
        },
        FleetUser {
            name: "soc".into(),
            password: password("soc"),
            role: Role::ReadOnly,
        },
    ];
    for s in sites {
        users.push(FleetUser {
            name: s.name.into(),
            password: password(s.name),
            role: Role::Gateway {
                site: s.name.into(),
                gateway: GATEWAY.into(),
                fleet: s.fleet_wide,
            },
        });
    }
    users
}

impl FleetLab {
    /// Builds the cloud (`PREFIX-c`), creates the buckets as the
    /// administrator, then one lab per site (`PREFIX0`, `PREFIX1`, ...)
    /// with sensord in fleet mode; `extra` is added to every site's
    /// configuration.
    pub fn create(
        prefix: &str,
        specs: &[SiteSpec],
        extra: &str,
        bin_dir: &std::path::Path,
    ) -> Result<FleetLab> {
        FleetLab::create_with(prefix, specs, |_| extra.to_string(), bin_dir)
    }

    /// `create`, with each site's own addition to its configuration.
    pub fn create_with(
        prefix: &str,
        specs: &[SiteSpec],
        extra: impl Fn(&SiteSpec) -> String,
        bin_dir: &std::path::Path,
    ) -> Result<FleetLab> {
        let secret = format!("{:x}", std::process::id() ^ 0x5eed);
        let users = fleet_users(specs, &secret);
        let cloud = Cloud::create(&format!("{prefix}c"), 3, users.clone())?;
        let mut fleet = FleetLab {
            sites: Vec::new(),
            cloud,
        };
        for user in &users {
            fs::write(fleet.password_file(&user.name), &user.password)?;
        }
        let admin = fleet.cloud.dir.join("admin.toml");
        fs::write(&admin, fleet.fleet_table("admin", "admin", &["gateway"]))?;
        let init = fleet.cloud.switch.exec(
            &bin_dir.join("sensorctl").to_string_lossy(),
            &["fleet", "init", "--config", &admin.to_string_lossy()],
        )?;
        if !init.contains("created") {
            bail!("sensorctl fleet init: {init}");
        }
        for (i, spec) in specs.iter().enumerate() {
            let publish: &[&str] = match spec.fleet_wide {
                true => &["gateway", "site", "fleet"],
                false => &["gateway", "site"],
            };
            let config = format!(
                "{}{}",
                extra(spec),
                fleet.fleet_table(spec.name, spec.name, publish)
            );
            let lab = Lab::create(&LabOptions {
                prefix: format!("{prefix}{i}"),
                extra_config: config,
                bin_dir: bin_dir.into(),
                domain: false,
            })
            .with_context(|| format!("building {}'s lab", spec.name))?;
            fleet
                .cloud
                .attach(&lab.gateway, i + 1)
                .with_context(|| format!("wiring {} to the cloud", spec.name))?;
            lab.start_sensord()
                .with_context(|| format!("starting {}'s sensord", spec.name))?;
            fleet.sites.push(Site {
                name: spec.name.into(),
                lab,
            });
        }
        Ok(fleet)
    }

    /// The `[fleet]` table for `user` (a site's, or "admin" or "soc").
    pub fn fleet_table(&self, user: &str, site: &str, publish: &[&str]) -> String {
        let servers: Vec<String> = self
            .cloud
            .servers()
            .iter()
            .map(|s| format!("{s:?}"))
            .collect();
        let file = self.password_file(user);
        let publish: Vec<String> = publish.iter().map(|p| format!("{p:?}")).collect();
        format!(
            "\n[fleet]\nservers = [{}]\nsite = {site:?}\ngateway = {GATEWAY:?}\nuser = {user:?}\npassword_file = {file:?}\ntls_ca_file = {ca:?}\npublish = [{}]\n",
            servers.join(", "),
            publish.join(", "),
            ca = self.cloud.ca_file(),
        )
    }

    /// Where `user`'s password is kept.
    pub fn password_file(&self, user: &str) -> PathBuf {
        self.cloud.dir.join(format!("{user}.password"))
    }

    pub fn site(&self, name: &str) -> &Lab {
        &self
            .sites
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no site {name}"))
            .lab
    }

    /// The gateway number of a site, as the cloud wired it (1-based).
    pub fn number(&self, name: &str) -> usize {
        1 + self
            .sites
            .iter()
            .position(|s| s.name == name)
            .expect("a site")
    }
}
