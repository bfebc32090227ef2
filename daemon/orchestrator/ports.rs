//! The port pool: ports handed to instances, kept across restarts and
//! released on delete.

use std::{
    collections::BTreeMap,
    fmt,
    net::{Ipv4Addr, TcpListener},
    str::FromStr,
};

/// An inclusive range of TCP ports, written `START-END`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range (inclusive).
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| "expected START-END, e.g. 4100-4199".to_owned())?;
        let first = parse_port(first.trim())?;
        let last = parse_port(last.trim())?;
        if first == 0 {
            return Err("ports start at 1".to_owned());
        }
        if first > last {
            return Err(format!("start {first} is greater than end {last}"));
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("port {text:?} is not a number from 0 to 65535"))
}

/// Why a port could not be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    /// Every port of the pool is allocated or bound by someone else.
    #[error("port pool {0} is exhausted")]
    Exhausted(PortRange),
    /// The fixed port is allocated to another instance.
    #[error("port {port} is already allocated to instance {owner}")]
    Allocated {
        port: u16,
        /// The instance holding it.
        owner: String,
    },
    /// The fixed port is bound by a process outside the daemon's control.
    #[error("port {0} is in use by another process")]
    InUse(u16),
}

/// Allocations from one pool (fixed ports outside the pool are tracked too).
#[derive(Debug)]
pub struct PortPool {
    range: PortRange,
    allocated: BTreeMap<u16, String>,
}

/// Whether nobody listens on `port` (checked by binding it briefly).
fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

impl PortPool {
    /// An empty pool over `range`.
    pub fn new(range: PortRange) -> Self {
        Self {
            range,
            allocated: BTreeMap::new(),
        }
    }

    /// Gives `owner` the lowest port that is neither allocated nor bound.
    pub fn allocate_auto(&mut self, owner: &str) -> Result<u16, PortError> {
        let port = (self.range.first..=self.range.last)
            .find(|port| !self.allocated.contains_key(port) && bindable(*port))
            .ok_or(PortError::Exhausted(self.range))?;
        self.allocated.insert(port, owner.to_owned());
        Ok(port)
    }

    /// Gives `owner` the fixed `port` if nobody else has it.
    pub fn allocate_fixed(&mut self, owner: &str, port: u16) -> Result<u16, PortError> {
        if let Some(holder) = self.allocated.get(&port) {
            return Err(PortError::Allocated {
                port,
                owner: holder.clone(),
            });
        }
        if !bindable(port) {
            return Err(PortError::InUse(port));
        }
        self.allocated.insert(port, owner.to_owned());
        Ok(port)
    }

    /// Records a port already in use by `owner` (an external instance).
    pub fn claim(&mut self, owner: &str, port: u16) -> Result<(), PortError> {
        match self.allocated.get(&port) {
            Some(holder) if holder != owner => Err(PortError::Allocated {
                port,
                owner: holder.clone(),
            }),
            _ => {
                self.allocated.insert(port, owner.to_owned());
                Ok(())
            }
        }
    }

    /// Every allocation: port → owning instance id.
    pub fn allocations(&self) -> std::collections::HashMap<u16, String> {
        self.allocated
            .iter()
            .map(|(port, owner)| (*port, owner.clone()))
            .collect()
    }

    /// Returns `port` to the pool.
    pub fn release(&mut self, port: u16) {
        self.allocated.remove(&port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A range of free ports found by binding port 0.
    fn free_range(len: u16) -> PortRange {
        loop {
            let first = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(last) = first.checked_add(len - 1)
                && (first..=last).all(bindable)
            {
                return PortRange { first, last };
            }
        }
    }

    #[test]
    fn lowest_free_port_first_and_bound_ports_skipped() {
        let range = free_range(3);
        let mut pool = PortPool::new(range);
        let _busy = TcpListener::bind((Ipv4Addr::UNSPECIFIED, range.first)).unwrap();
        assert_eq!(pool.allocate_auto("a"), Ok(range.first + 1));
        assert_eq!(pool.allocate_auto("b"), Ok(range.first + 2));
        assert_eq!(pool.allocate_auto("c"), Err(PortError::Exhausted(range)));
        pool.release(range.first + 1);
        assert_eq!(pool.allocate_auto("c"), Ok(range.first + 1));
    }

    #[test]
    fn fixed_ports_are_exclusive() {
        let range = free_range(2);
        let mut pool = PortPool::new(range);
        assert_eq!(pool.allocate_fixed("a", range.first), Ok(range.first));
        assert!(matches!(
            pool.allocate_fixed("b", range.first),
            Err(PortError::Allocated { .. })
        ));
        assert!(matches!(pool.allocate_auto("b"), Ok(port) if port == range.last));
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(
            "4100-4199".parse::<PortRange>().unwrap(),
            PortRange {
                first: 4100,
                last: 4199
            }
        );
        for bad in ["4100", "0-10", "20-10", "1-65536", "a-b"] {
            assert!(
                bad.parse::<PortRange>().is_err(),
                "{bad} should be rejected"
            );
        }
    }
}
