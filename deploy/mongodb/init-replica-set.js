// Initiates the compose stack's replica set rs0 once, then waits for a primary.
// Run by the one-shot `mongo-init` service; running it again changes nothing.
const members = [
  { _id: 0, host: "mongo-1:27017", priority: 2 },
  { _id: 1, host: "mongo-2:27017", priority: 1 },
  { _id: 2, host: "mongo-3:27017", priority: 1 },
];

function initiated() {
  try {
    rs.status();
    return true;
  } catch (err) {
    // 94 NotYetInitialized: a fresh set.
    if (err.code === 94) return false;
    throw err;
  }
}

if (initiated()) {
  print("replica set rs0 already initiated");
} else {
  rs.initiate({ _id: "rs0", members: members });
  print("replica set rs0 initiated");
}

const deadline = Date.now() + 120 * 1000;
while (!db.hello().isWritablePrimary && !db.hello().primary) {
  if (Date.now() > deadline) {
    print("no primary elected after 120 s");
    quit(1);
  }
  sleep(1000);
}
print("replica set rs0 has a primary: " + db.hello().primary);
