//! Frames from a tap into detection events: decoded as a capture file's
//! would be, through the same flow tracking, so the detectors judge tap
//! traffic exactly as they judge inline traffic and captures.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    config::Segment,
    detect::{
        capture::{self, FlowTracker},
        Event, Nanos,
    },
};

/// Which of a tap's frames feed the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TapTraffic {
    /// `east-west` when sensord also has inline interfaces, `all` when not.
    #[default]
    Auto,
    /// Only frames between two addresses of one segment: what never
    /// crosses the gateway. (The gateway's own telemetry has the rest, and
    /// counting a flow twice would double its bytes and attempts.)
    EastWest,
    /// Every frame (a tap-only sensor).
    All,
}

impl TapTraffic {
    /// `Auto` made definite for a sensor with or without inline interfaces.
    pub fn resolve(self, inline: bool) -> TapTraffic {
        match self {
            TapTraffic::Auto if inline => TapTraffic::EastWest,
            TapTraffic::Auto => TapTraffic::All,
            other => other,
        }
    }
}

/// What the feed did with the frames it was given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeedCounts {
    pub frames: u64,
    /// Not IP, or cut short.
    pub undecodable: u64,
    /// Left to the inline datapath (`east-west`).
    pub out_of_scope: u64,
    pub events: u64,
}

pub struct TapFeed {
    traffic: TapTraffic,
    tracker: FlowTracker,
    /// `Some` in east-west mode: segment ranges, longest first.
    segments: Option<Vec<(IpNet, u32)>>,
    pub counts: FeedCounts,
}

impl TapFeed {
    pub fn new(traffic: TapTraffic, segments: &[Segment]) -> TapFeed {
        let segments = (traffic == TapTraffic::EastWest).then(|| {
            let mut ranges: Vec<(IpNet, u32)> = segments
                .iter()
                .flat_map(|s| s.cidrs.iter().map(move |c| (*c, s.id)))
                .collect();
            ranges.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
            ranges
        });
        TapFeed {
            traffic,
            tracker: FlowTracker::default(),
            segments,
            counts: FeedCounts::default(),
        }
    }

    fn segment(&self, ranges: &[(IpNet, u32)], addr: IpAddr) -> u32 {
        ranges
            .iter()
            .find(|(net, _)| net.contains(&addr))
            .map_or(0, |(_, id)| *id)
    }

    /// One Ethernet frame, received at `ts`.
    pub fn frame(&mut self, ts: Nanos, data: &[u8], emit: &mut dyn FnMut(Event)) {
        self.counts.frames += 1;
        let Some(packet) =
            capture::decode(capture::Link::Ethernet, ts, data.len() as u64, data).ok()
        else {
            self.counts.undecodable += 1;
            return;
        };
        if let Some(ranges) = &self.segments {
            let src = self.segment(ranges, packet.src);
            if src == 0 || src != self.segment(ranges, packet.dst) {
                self.counts.out_of_scope += 1;
                return;
            }
        }
        let events = &mut self.counts.events;
        self.tracker.packet(&packet, &mut |e| {
            *events += 1;
            emit(e)
        });
    }

    /// Ends idle flows (called about once a second).
    pub fn tick(&mut self, now: Nanos, emit: &mut dyn FnMut(Event)) {
        let events = &mut self.counts.events;
        self.tracker.tick(now, &mut |e| {
            *events += 1;
            emit(e)
        });
    }

    pub fn traffic(&self) -> TapTraffic {
        self.traffic
    }

    pub fn open_flows(&self) -> usize {
        self.tracker.open_flows()
    }

    pub fn flows_evicted(&self) -> u64 {
        self.tracker.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Kind;

    fn segments() -> Vec<Segment> {
        vec![
            Segment {
                id: 1,
                name: "internet".into(),
                cidrs: vec!["0.0.0.0/0".parse().unwrap()],
                ports: vec![],
                switched: false,
            },
            Segment {
                id: 2,
                name: "office".into(),
                cidrs: vec!["10.10.0.0/24".parse().unwrap()],
                ports: vec![],
                switched: false,
            },
        ]
    }

    /// An Ethernet + IPv4 + TCP SYN frame.
    fn syn(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let tcp = &mut f[34..54];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x02;
        f
    }

    fn kinds(feed: &mut TapFeed, frame: &[u8]) -> Vec<Kind> {
        let mut out = Vec::new();
        feed.frame(1, frame, &mut |e| out.push(e.kind));
        out
    }

    #[test]
    fn east_west_keeps_only_frames_inside_one_segment() {
        let mut feed = TapFeed::new(TapTraffic::EastWest, &segments());
        assert_eq!(
            kinds(&mut feed, &syn([10, 10, 0, 11], [10, 10, 0, 12], 445)),
            vec![Kind::Syn]
        );
        assert!(kinds(&mut feed, &syn([10, 10, 0, 11], [203, 0, 113, 80], 80)).is_empty());
        assert!(kinds(&mut feed, &[0u8; 20]).is_empty());
        assert_eq!(
            feed.counts,
            FeedCounts {
                frames: 3,
                undecodable: 1,
                out_of_scope: 1,
                events: 1
            }
        );
    }

    #[test]
    fn all_keeps_every_decodable_frame() {
        let mut feed = TapFeed::new(TapTraffic::All, &segments());
        assert_eq!(
            kinds(&mut feed, &syn([10, 10, 0, 11], [203, 0, 113, 80], 80)),
            vec![Kind::Syn]
        );
    }

    #[test]
    fn auto_is_east_west_only_next_to_inline_interfaces() {
        assert_eq!(TapTraffic::Auto.resolve(true), TapTraffic::EastWest);
        assert_eq!(TapTraffic::Auto.resolve(false), TapTraffic::All);
        assert_eq!(TapTraffic::All.resolve(true), TapTraffic::All);
    }
}
