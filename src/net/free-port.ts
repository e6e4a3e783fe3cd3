// A TCP port free on an address right now, from the kernel's ephemeral range: where
// an incoming migration or an NBD export listens.
import net from "node:net";

export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
