use gatekit_harness::report::{Report, Thresholds};
use gatekit_harness::scenario::*;
use gatekit_harness::sim;

fn base() -> Scenario {
    Scenario::from_toml(
        r#"
clients = 1
duration = "19s"
ramp_up = "1001ms"
rate = 0.0
window = 1
notify_ratio = 0.0
body_size = 16
burst_size = 1
ping_interval = "20s"
bind_users = true
push_rate = 0.0
seed = 290705460213434833
[mix]
normal = 0.0
dribble = 1.0
[gate]
heartbeat = "5s"
"#,
    )
    .unwrap()
}

#[test]
fn scratch() {
    for (label, f) in [
        (
            "as is",
            Box::new(|_: &mut Scenario| {}) as Box<dyn Fn(&mut Scenario)>,
        ),
        (
            "normal",
            Box::new(|s: &mut Scenario| {
                s.mix.dribble = 0.0;
                s.mix.normal = 1.0
            }),
        ),
        (
            "dur 30s",
            Box::new(|s: &mut Scenario| s.duration = Dur::secs(30)),
        ),
    ] {
        let mut s = base();
        f(&mut s);
        let d = sim::run(&s, |_, _, _| {});
        let r = Report::new(&d, &Thresholds::default());
        println!(
            "== {label}: elapsed {:?} send_end {:?}",
            d.finished - d.started,
            d.send_end - d.started
        );
        for c in &d.conns {
            println!(
                "  {} {:?} {:?} act {:?}",
                c.index,
                c.behavior,
                c.close_reason,
                c.activity
                    .iter()
                    .map(|a| *a - d.started)
                    .collect::<Vec<_>>()
            );
        }
        for (_, l) in &d.recorder.sessions {
            println!(
                "  connect {:?} hb {:?} disc {:?}",
                l.connect_at.map(|c| c - d.started),
                l.heartbeats
                    .iter()
                    .map(|a| *a - d.started)
                    .collect::<Vec<_>>(),
                l.disconnects
                    .iter()
                    .map(|a| (a.0 - d.started, a.1))
                    .collect::<Vec<_>>()
            );
        }
        println!("{r}");
    }
}
