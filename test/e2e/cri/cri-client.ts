// A CRI (runtime.v1) client for the tests, speaking to a runtime's unix
// socket as kubelet does: the calls of runtime-v1.proto, promisified, with
// the proto's field names (snake_case) in requests and responses.

import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO = join(import.meta.dirname, 'runtime-v1.proto');

type Message = Record<string, unknown>;
type Unary = (request: Message, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response: Message) => void) => void;

export const CRI_CALLS = ['Version', 'RunPodSandbox', 'StopPodSandbox', 'RemovePodSandbox', 'PodSandboxStatus', 'CreateContainer', 'StartContainer', 'StopContainer', 'RemoveContainer', 'ContainerStatus', 'ExecSync'] as const;
export type CriCall = (typeof CRI_CALLS)[number];

export class CriClient {
  private constructor(private readonly client: grpc.Client & Record<string, Unary>) {}

  static connect(socket: string): CriClient {
    const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as { runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } } };
    const client = new loaded.runtime.v1.RuntimeService(`unix://${socket}`, grpc.credentials.createInsecure());
    return new CriClient(client as unknown as grpc.Client & Record<string, Unary>);
  }

  /** One call; rejects with the runtime's gRPC error (its message names what failed). */
  call<T = Message>(name: CriCall, request: Message, timeoutMs = 120_000): Promise<T> {
    const method = this.client[name]!.bind(this.client);
    return new Promise((resolve, reject) => {
      method(request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) => {
        if (error) reject(new Error(`CRI ${name}: ${error.details || error.message}`));
        else resolve(response as T);
      });
    });
  }

  /** Resolves once the socket answers Version, or rejects after timeoutMs. */
  async waitReady(timeoutMs = 30_000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.call('Version', { version: 'v1' }, 2000);
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  close(): void {
    this.client.close();
  }
}
