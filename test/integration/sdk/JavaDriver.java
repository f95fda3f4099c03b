import com.google.gson.GsonBuilder;
import com.segment.analytics.Analytics;
import com.segment.analytics.Callback;
import com.segment.analytics.Log;
import com.segment.analytics.messages.AliasMessage;
import com.segment.analytics.messages.GroupMessage;
import com.segment.analytics.messages.IdentifyMessage;
import com.segment.analytics.messages.Message;
import com.segment.analytics.messages.MessageBuilder;
import com.segment.analytics.messages.PageMessage;
import com.segment.analytics.messages.ScreenMessage;
import com.segment.analytics.messages.TrackMessage;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Drives Segment's Java library (com.segment.analytics.java:analytics), unmodified, for
 * test/integration/sdk-java.test.ts: only the endpoint (host) and the write key are set, so
 * its defaults (path, batching, retries, HTTP client) are what a user gets. It also gets a
 * Callback (to know each message's fate) and a Log (to see uploads and retries): both are
 * the library's own observation hooks and change nothing it sends.
 *
 * <p>Usage: java -cp ... JavaDriver ENDPOINT WRITE_KEY RUN_ID
 *
 * <p>Sends one message of each call type (and a back-dated track), each tagged with RUN_ID
 * (properties.run or traits.run, userIds and messageIds prefixed by it, context.orreryTest),
 * flushes, shuts down, waits for every message's callback, then prints one JSON line on
 * stdout: what it sent and what came back. Exits 0 only when every message succeeded in a
 * single upload attempt; the library's log goes to stderr.
 */
public final class JavaDriver {
  private static final long CALLBACK_TIMEOUT_S = 60;

  public static void main(String[] args) throws InterruptedException {
    if (args.length != 3) {
      System.err.println("usage: JavaDriver ENDPOINT WRITE_KEY RUN_ID");
      System.exit(2);
    }
    String endpoint = args[0];
    String writeKey = args[1];
    String run = args[2];

    List<String> succeeded = Collections.synchronizedList(new ArrayList<>());
    List<Map<String, String>> failures = Collections.synchronizedList(new ArrayList<>());
    List<String> logLines = Collections.synchronizedList(new ArrayList<>());
    Map<String, Integer> uploads = Collections.synchronizedMap(new LinkedHashMap<>());
    int[] retries = {0};

    List<MessageBuilder<?, ?>> builders = messages(run);
    CountDownLatch done = new CountDownLatch(builders.size());

    Analytics analytics =
        Analytics.builder(writeKey)
            .endpoint(endpoint)
            .callback(
                new Callback() {
                  @Override
                  public void success(Message message) {
                    succeeded.add(message.messageId());
                    done.countDown();
                  }

                  @Override
                  public void failure(Message message, Throwable throwable) {
                    Map<String, String> f = new LinkedHashMap<>();
                    f.put("messageId", message.messageId());
                    f.put("error", String.valueOf(throwable));
                    failures.add(f);
                    done.countDown();
                  }
                })
            .log(
                new Log() {
                  @Override
                  public void print(Level level, String format, Object... args) {
                    record(level, String.format(format, args));
                  }

                  @Override
                  public void print(Level level, Throwable error, String format, Object... args) {
                    record(level, String.format(format, args) + ": " + error);
                  }

                  private void record(Level level, String line) {
                    System.err.println("[analytics-java " + level + "] " + line);
                    logLines.add(line);
                    // "Uploading batch N." before every attempt; "... Retrying." after a
                    // failed one that the library will try again.
                    if (line.startsWith("Uploading batch ") && line.endsWith(".")) {
                      String batch = line.substring("Uploading batch ".length(), line.length() - 1);
                      uploads.merge(batch, 1, Integer::sum);
                    }
                    if (line.contains("Retrying")) {
                      synchronized (retries) {
                        retries[0]++;
                      }
                    }
                  }
                })
            .build();

    List<Map<String, Object>> sent = new ArrayList<>();
    for (MessageBuilder<?, ?> builder : builders) {
      Message message = builder.build();
      analytics.enqueue(builder);
      Map<String, Object> s = new LinkedHashMap<>();
      s.put("type", message.type().name());
      s.put("messageId", message.messageId());
      s.put("userId", message.userId());
      s.put("anonymousId", message.anonymousId());
      sent.add(s);
    }
    analytics.flush();
    analytics.shutdown();
    boolean allCalledBack = done.await(CALLBACK_TIMEOUT_S, TimeUnit.SECONDS);

    boolean noRetries;
    synchronized (retries) {
      noRetries = retries[0] == 0 && uploads.values().stream().allMatch(n -> n == 1);
    }
    boolean ok =
        allCalledBack && failures.isEmpty() && succeeded.size() == builders.size() && noRetries;

    Map<String, Object> report = new LinkedHashMap<>();
    report.put("ok", ok);
    report.put("sent", sent);
    report.put("succeeded", new ArrayList<>(succeeded));
    report.put("failures", new ArrayList<>(failures));
    report.put("allCalledBack", allCalledBack);
    report.put("uploads", new LinkedHashMap<>(uploads));
    report.put("retries", retries[0]);
    report.put("log", new ArrayList<>(logLines));
    System.out.println(new GsonBuilder().serializeNulls().create().toJson(report));
    System.out.flush();
    // The library's threads are not daemons, and shutdown() leaves the network thread to
    // finish on its own: the verdict is in, so exit now.
    System.exit(ok ? 0 : 1);
  }

  /** One message of each call type, plus a back-dated track for the clock-skew correction. */
  private static List<MessageBuilder<?, ?>> messages(String run) {
    String user = run + "-u1";
    String anon = run + "-a1";
    Map<String, Object> context = new LinkedHashMap<>();
    context.put("orreryTest", Map.of("run", run, "driver", "JavaDriver"));

    List<MessageBuilder<?, ?>> out = new ArrayList<>();
    out.add(
        IdentifyMessage.builder()
            .userId(user)
            .traits(Map.of("run", run, "plan", "pro"))
            .messageId(run + "-identify")
            .context(context));
    out.add(
        TrackMessage.builder("Order Completed")
            .userId(user)
            .properties(Map.of("run", run, "revenue", 9.5))
            .messageId(run + "-track")
            .context(context));
    out.add(
        PageMessage.builder("Home")
            .anonymousId(anon)
            .properties(Map.of("run", run))
            .messageId(run + "-page")
            .context(context));
    out.add(
        ScreenMessage.builder("Cart")
            .userId(user)
            .properties(Map.of("run", run))
            .messageId(run + "-screen")
            .context(context));
    out.add(
        GroupMessage.builder(run + "-acme")
            .userId(user)
            .traits(Map.of("run", run))
            .messageId(run + "-group")
            .context(context));
    out.add(
        AliasMessage.builder(anon).userId(user).messageId(run + "-alias").context(context));
    // An hour in the past, as a device whose clock runs an hour slow would stamp it.
    out.add(
        TrackMessage.builder("Backdated")
            .anonymousId(anon)
            .properties(Map.of("run", run))
            .timestamp(new Date(System.currentTimeMillis() - 3_600_000L))
            .messageId(run + "-backdated")
            .context(context));
    return out;
  }
}
