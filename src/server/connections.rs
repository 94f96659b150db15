//! Which WebSocket carries which device. A device's id is the number of the connection it
//! signed in on; after a resume (`Output::Attach`) a newer connection carries it, and the
//! older one, if it still reports anything, is stale and ignored. The switchboard core only
//! ever sees device ids.

use std::collections::HashMap;

use tokio::sync::mpsc;

use super::switchboard::ConnId;

pub(super) struct Connections<T> {
    /// Each live socket: its writer and the device it carries.
    sockets: HashMap<ConnId, (mpsc::UnboundedSender<T>, ConnId)>,
    /// Each device's current socket.
    current: HashMap<ConnId, ConnId>,
}

impl<T> Connections<T> {
    pub(super) fn new() -> Self {
        Connections {
            sockets: HashMap::new(),
            current: HashMap::new(),
        }
    }

    pub(super) fn opened(&mut self, socket: ConnId, tx: mpsc::UnboundedSender<T>) {
        self.sockets.insert(socket, (tx, socket));
        self.current.insert(socket, socket);
    }

    /// The device `socket` speaks for, or None if a newer socket took its place.
    pub(super) fn device(&self, socket: ConnId) -> Option<ConnId> {
        let (_, device) = self.sockets.get(&socket)?;
        (self.current.get(device) == Some(&socket)).then_some(*device)
    }

    /// `socket` now carries `device`.
    pub(super) fn attach(&mut self, socket: ConnId, device: ConnId) {
        if let Some(entry) = self.sockets.get_mut(&socket) {
            entry.1 = device;
        }
        self.current.remove(&socket);
        self.current.insert(device, socket);
    }

    pub(super) fn closed(&mut self, socket: ConnId) {
        if let Some((_, device)) = self.sockets.remove(&socket)
            && self.current.get(&device) == Some(&socket)
        {
            self.current.remove(&device);
        }
    }

    /// The writer of the socket that carries `device` now.
    pub(super) fn writer(&self, device: ConnId) -> Option<&mpsc::UnboundedSender<T>> {
        let socket = self.current.get(&device)?;
        self.sockets.get(socket).map(|(tx, _)| tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_device_is_reached_on_its_new_socket_and_the_old_one_is_stale() {
        let mut c = Connections::<u8>::new();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        c.opened(1, tx1);
        c.opened(2, tx2);
        assert_eq!((c.device(1), c.device(2)), (Some(1), Some(2)));
        c.attach(2, 1);
        assert_eq!(c.device(2), Some(1), "socket 2 speaks for device 1");
        assert_eq!(c.device(1), None, "the old socket is stale");
        c.writer(1).unwrap().send(7).unwrap();
        assert_eq!(rx2.try_recv(), Ok(7));
        assert!(rx1.try_recv().is_err());
        assert!(c.writer(2).is_none(), "2 is no device of its own any more");
        // The stale socket closing changes nothing; the current one closing ends the device.
        c.closed(1);
        assert_eq!(c.device(2), Some(1));
        c.closed(2);
        assert!(c.writer(1).is_none());
        assert_eq!(c.device(2), None);
    }
}
