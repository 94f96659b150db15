//! Video capture nodes. Only listed for now: nothing captures from them yet.

use std::path::Path;

/// `(node, name)` for each V4L2 capture node, e.g. `("/dev/video0", "Integrated Camera")`,
/// in node order. Empty when the machine has none (or no /dev at all).
pub fn list_cameras() -> Vec<(String, String)> {
    list_in(Path::new("/dev"), Path::new("/sys/class/video4linux"))
}

fn list_in(dev: &Path, sys: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return Vec::new();
    };
    let mut nodes: Vec<(u32, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let number = file.strip_prefix("video")?.parse().ok()?;
            Some((number, file))
        })
        .collect();
    nodes.sort();
    nodes
        .into_iter()
        // A UVC camera exposes a second node (index 1) for metadata, which cannot capture video.
        .filter(|(_, file)| read_trimmed(&sys.join(file).join("index")).is_none_or(|i| i == "0"))
        .map(|(_, file)| {
            let name = read_trimmed(&sys.join(&file).join("name")).unwrap_or_else(|| file.clone());
            (dev.join(&file).to_string_lossy().into_owned(), name)
        })
        .collect()
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::list_in;

    #[test]
    fn names_capture_nodes_from_sysfs_and_skips_metadata_nodes() {
        let root = tempfile::tempdir().unwrap();
        let (dev, sys) = (root.path().join("dev"), root.path().join("sys"));
        for (node, name, index) in [
            ("video0", "Cam A", "0"),
            ("video1", "Cam A", "1"),
            ("video10", "Cam B", "0"),
        ] {
            std::fs::create_dir_all(sys.join(node)).unwrap();
            std::fs::write(sys.join(node).join("name"), format!("{name}\n")).unwrap();
            std::fs::write(sys.join(node).join("index"), index).unwrap();
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::write(dev.join(node), "").unwrap();
        }
        std::fs::write(dev.join("video2"), "").unwrap();
        std::fs::write(dev.join("videox"), "").unwrap();
        let found = list_in(&dev, &sys);
        let names: Vec<_> = found
            .iter()
            .map(|(n, name)| (n.rsplit('/').next().unwrap().to_string(), name.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("video0".into(), "Cam A".into()),
                ("video2".into(), "video2".into()),
                ("video10".into(), "Cam B".into())
            ]
        );
        assert!(list_in(&root.path().join("none"), &sys).is_empty());
    }
}
